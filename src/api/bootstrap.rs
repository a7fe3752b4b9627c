//! `mbd bootstrap-apt URL`: trust on first use, as mini-buildd-bootstrap-apt does. The
//! archive's identity comes from its status, a temporary apt source (with the archive key
//! inline as `Signed-By`) from its `sources_list`; apt installs `<identity>-archive-keyring`
//! through it, and the temporary source goes again. From then on the keyring package keeps
//! the key (and ships `.sources` files for every distribution).
//!
//! apt is the system's, or the one `APT_CONFIG` names (apt reads it itself).

use super::client::ClientError;
use std::path::PathBuf;
use std::process::Command;

/// What bootstrapping did.
#[derive(Debug)]
pub struct Bootstrapped {
    pub identity: String,
    pub package: String,
}

fn get(agent: &ureq::Agent, url: &str) -> Result<String, ClientError> {
    let transport = |reason: String| ClientError::Transport {
        url: url.to_string(),
        reason,
    };
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| transport(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| transport(e.to_string()))?;
    if status != 200 {
        return Err(ClientError::Refused {
            status,
            detail: format!("{url}: {}", body.trim()),
        });
    }
    Ok(body)
}

/// apt's directory of `.sources` files (`Dir::Etc::sourceparts`).
fn source_parts() -> Result<PathBuf, ClientError> {
    let out = Command::new("apt-config")
        .args(["shell", "D", "Dir::Etc::sourceparts/d"])
        .output()
        .map_err(|e| ClientError::Usage(format!("apt-config: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .trim()
        .strip_prefix("D=")
        .map(|v| v.trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ClientError::Usage(format!("apt-config gave no sources directory: {text}"))
        })?;
    Ok(PathBuf::from(dir))
}

fn apt_get(args: &[&str]) -> Result<(), ClientError> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| ClientError::Usage(format!("apt-get: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "apt-get {} failed ({status})",
            args.join(" ")
        )))
    }
}

/// Bootstraps apt's trust in the archive at `url` (see the module).
pub fn bootstrap(url: &str) -> Result<Bootstrapped, ClientError> {
    let url = url.trim_end_matches('/');
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status: serde_json::Value =
        serde_json::from_str(&get(&agent, &format!("{url}/api/status"))?)
            .map_err(|e| ClientError::Usage(format!("{url}/api/status: {e}")))?;
    let identity = status["identity"]
        .as_str()
        .filter(|i| {
            !i.is_empty()
                && i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        })
        .ok_or_else(|| ClientError::Usage(format!("{url}/api/status names no identity")))?
        .to_string();
    let sources = get(
        &agent,
        &format!("{url}/api/sources_list?format=sources&signed_by=inline&output=plain"),
    )?;
    let temporary = source_parts()?.join(format!("mbd-bootstrap-{identity}.sources"));
    std::fs::write(&temporary, &sources).map_err(|e| ClientError::Credentials {
        path: temporary.clone(),
        reason: e.to_string(),
    })?;
    let package = format!("{}-archive-keyring", identity.to_ascii_lowercase());
    let installed =
        apt_get(&["-q", "update"]).and_then(|()| apt_get(&["-q", "-y", "install", &package]));
    let _ = std::fs::remove_file(&temporary);
    installed?;
    apt_get(&["-q", "update"])?;
    Ok(Bootstrapped { identity, package })
}
