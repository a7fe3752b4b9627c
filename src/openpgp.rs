//! OpenPGP, in process with sequoia-openpgp: the archive key (generate, store, export), the
//! signatures apt checks (`InRelease`, `Release.gpg`), and verification of clear-signed uploads
//! against a keyring of allowed keys.
//!
//! Keys are v4 (bookworm's gpgv refuses v6). An upload signature counts only if its key is
//! known, currently alive (not expired) and not revoked, whatever the key's state was when the
//! signature was made.

use pgp::armor;
use pgp::cert::prelude::*;
use pgp::parse::Parse;
use pgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
    VerifierBuilder,
};
use pgp::policy::StandardPolicy;
use pgp::serialize::SerializeInto;
use pgp::serialize::stream::{Armorer, Message, Signer};
use pgp::types::RevocationStatus;
use pgp::{Cert, KeyHandle};
use sequoia_openpgp as pgp;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

static POLICY: StandardPolicy<'static> = StandardPolicy::new();

#[derive(Debug, thiserror::Error)]
pub enum OpenPgpError {
    #[error("{path}: cannot read key material: {reason}")]
    ReadKey { path: PathBuf, reason: String },
    #[error("{path}: cannot write key: {reason}")]
    WriteKey { path: PathBuf, reason: String },
    #[error("invalid key material: {reason}")]
    InvalidKey { reason: String },
    #[error("key generation failed: {reason}")]
    Generate { reason: String },
    #[error("the archive key {fingerprint} has no usable signing key")]
    NoSigningKey { fingerprint: String },
    #[error("signing failed: {reason}")]
    Sign { reason: String },
    #[error("not OpenPGP clear-signed")]
    NotSigned,
    #[error("signed by unknown key {key_id}")]
    UnknownKey { key_id: String },
    #[error("signed by expired key {key_id}")]
    ExpiredKey { key_id: String },
    #[error("signed by revoked key {key_id}")]
    RevokedKey { key_id: String },
    #[error("signed by key {key_id}, which is not usable: {reason}")]
    UnusableKey { key_id: String, reason: String },
    #[error("bad signature by key {key_id}")]
    BadSignature { key_id: String },
    #[error("invalid signature: {reason}")]
    Malformed { reason: String },
}

/// The public-key algorithm of a newly generated archive key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 signing, fast and small; every supported apt verifies it.
    #[default]
    Ed25519,
    /// RSA 4096, for clients with very old gpgv.
    Rsa4096,
}

/// The archive's secret key: signs every published Release.
#[derive(Clone)]
pub struct ArchiveKey {
    cert: Cert,
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveKey({})", self.fingerprint())
    }
}

impl ArchiveKey {
    /// Generates a new key without passphrase. Its creation time is set a minute in the past so
    /// that a client whose clock lags slightly does not see a key "created in the future".
    pub fn generate(user_id: &str, algorithm: KeyAlgorithm) -> Result<ArchiveKey, OpenPgpError> {
        let suite = match algorithm {
            KeyAlgorithm::Ed25519 => CipherSuite::Cv25519,
            KeyAlgorithm::Rsa4096 => CipherSuite::RSA4k,
        };
        let (cert, _revocation) = CertBuilder::new()
            .add_userid(user_id)
            .set_cipher_suite(suite)
            .set_creation_time(SystemTime::now() - Duration::from_secs(60))
            .set_validity_period(None)
            .add_signing_subkey()
            .generate()
            .map_err(|e| OpenPgpError::Generate {
                reason: e.to_string(),
            })?;
        Ok(ArchiveKey { cert })
    }

    /// Reads an armored or binary secret key.
    pub fn from_bytes(data: &[u8]) -> Result<ArchiveKey, OpenPgpError> {
        let cert = Cert::from_bytes(data).map_err(|e| OpenPgpError::InvalidKey {
            reason: e.to_string(),
        })?;
        if !cert.is_tsk() {
            return Err(OpenPgpError::InvalidKey {
                reason: "no secret key material".into(),
            });
        }
        let key = ArchiveKey { cert };
        key.signing_keypair()?;
        Ok(key)
    }

    pub fn load(path: &Path) -> Result<ArchiveKey, OpenPgpError> {
        let data = std::fs::read(path).map_err(|e| OpenPgpError::ReadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        ArchiveKey::from_bytes(&data).map_err(|e| OpenPgpError::ReadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Writes the secret key (armored) with mode 0600, atomically: a crash leaves either the
    /// old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), OpenPgpError> {
        let werr = |e: &dyn std::fmt::Display| OpenPgpError::WriteKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let data = self
            .cert
            .as_tsk()
            .armored()
            .to_vec()
            .map_err(|e| werr(&e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| werr(&e))?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| werr(&e))?;
            f.write_all(&data).map_err(|e| werr(&e))?;
            f.sync_all().map_err(|e| werr(&e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| werr(&e))
    }

    /// Loads the key at `path`, or generates and saves one if there is no file. Returns the key
    /// and whether it was generated now.
    pub fn load_or_generate(
        path: &Path,
        user_id: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<(ArchiveKey, bool), OpenPgpError> {
        if path.exists() {
            return Ok((ArchiveKey::load(path)?, false));
        }
        let key = ArchiveKey::generate(user_id, algorithm)?;
        key.save(path)?;
        Ok((key, true))
    }

    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    pub fn user_id(&self) -> Option<String> {
        self.cert
            .userids()
            .next()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
    }

    /// The public key, binary (what gpgv wants as `--keyring`).
    pub fn public_binary(&self) -> Vec<u8> {
        self.cert
            .to_vec()
            .expect("serializing a public cert to memory")
    }

    /// The public key, ASCII armored (what apt's `signed-by` and users want).
    pub fn public_armored(&self) -> Vec<u8> {
        self.cert
            .armored()
            .to_vec()
            .expect("serializing a public cert to memory")
    }

    /// A keyring holding just this key's public part, for verifying our own signatures.
    pub fn keyring(&self) -> Keyring {
        Keyring {
            certs: vec![self.cert.clone().strip_secret_key_material()],
        }
    }

    fn signing_keypair(&self) -> Result<pgp::crypto::KeyPair, OpenPgpError> {
        let no_key = || OpenPgpError::NoSigningKey {
            fingerprint: self.fingerprint(),
        };
        let ka = self
            .cert
            .keys()
            .unencrypted_secret()
            .with_policy(&POLICY, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .ok_or_else(no_key)?;
        ka.key().clone().into_keypair().map_err(|_| no_key())
    }

    /// A clear-signed document (`InRelease`). Release files have no trailing white space, so
    /// the signed text is exactly `text`.
    pub fn clearsign(&self, text: &[u8]) -> Result<Vec<u8>, OpenPgpError> {
        let serr = |e: pgp::anyhow::Error| OpenPgpError::Sign {
            reason: e.to_string(),
        };
        let mut out = Vec::new();
        let mut signer = Signer::new(Message::new(&mut out), self.signing_keypair()?)
            .map_err(serr)?
            .cleartext()
            .build()
            .map_err(serr)?;
        signer.write_all(text).map_err(|e| OpenPgpError::Sign {
            reason: e.to_string(),
        })?;
        signer.finalize().map_err(serr)?;
        Ok(out)
    }

    /// An armored detached signature (`Release.gpg`).
    pub fn detached_sign(&self, data: &[u8]) -> Result<Vec<u8>, OpenPgpError> {
        let serr = |e: pgp::anyhow::Error| OpenPgpError::Sign {
            reason: e.to_string(),
        };
        let mut out = Vec::new();
        let message = Armorer::new(Message::new(&mut out))
            .kind(armor::Kind::Signature)
            .build()
            .map_err(serr)?;
        let mut signer = Signer::new(message, self.signing_keypair()?)
            .map_err(serr)?
            .detached()
            .build()
            .map_err(serr)?;
        signer.write_all(data).map_err(|e| OpenPgpError::Sign {
            reason: e.to_string(),
        })?;
        signer.finalize().map_err(serr)?;
        Ok(out)
    }
}

/// A verified clear-signed document.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Fingerprint of the primary key of the certificate that signed.
    pub fingerprint: String,
    /// The signed text: only this may be trusted, never the raw file.
    pub body: Vec<u8>,
}

/// Public keys allowed to sign (uploaders, or the archive key itself).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<Cert>,
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Reads one or more certificates, armored or binary. Secret parts are dropped.
    pub fn from_bytes(data: &[u8]) -> Result<Keyring, OpenPgpError> {
        let mut k = Keyring::new();
        k.add_bytes(data)?;
        Ok(k)
    }

    pub fn from_file(path: &Path) -> Result<Keyring, OpenPgpError> {
        let data = std::fs::read(path).map_err(|e| OpenPgpError::ReadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Keyring::from_bytes(&data).map_err(|e| OpenPgpError::ReadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    pub fn add_bytes(&mut self, data: &[u8]) -> Result<(), OpenPgpError> {
        let parser = CertParser::from_bytes(data).map_err(|e| OpenPgpError::InvalidKey {
            reason: e.to_string(),
        })?;
        let before = self.certs.len();
        for cert in parser {
            let cert = cert.map_err(|e| OpenPgpError::InvalidKey {
                reason: e.to_string(),
            })?;
            self.certs.push(cert.strip_secret_key_material());
        }
        if self.certs.len() == before {
            return Err(OpenPgpError::InvalidKey {
                reason: "no OpenPGP certificate found".into(),
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Fingerprints of the certificates, in keyring order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }

    /// Verifies a clear-signed document and returns its signer and the signed text.
    pub fn verify_cleartext(&self, data: &[u8]) -> Result<Verified, OpenPgpError> {
        self.verify_cleartext_issuers(data).0
    }

    /// [`Keyring::verify_cleartext`], plus the issuer key ids of every signature on the
    /// document (good or not): what a failed archive check reports.
    pub fn verify_cleartext_issuers(
        &self,
        data: &[u8],
    ) -> (Result<Verified, OpenPgpError>, Vec<String>) {
        if !data.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
            return (Err(OpenPgpError::NotSigned), Vec::new());
        }
        let outcome = Outcome::default();
        let helper = Helper::new(&self.certs, outcome.clone());
        let mut body = Vec::new();
        let result = VerifierBuilder::from_bytes(data)
            .and_then(|b| b.with_policy(&POLICY, None, helper))
            .and_then(|mut v| v.read_to_end(&mut body).map_err(Into::into));
        let issuers = outcome.issuers();
        let verified = outcome
            .settle(result)
            .map(|fingerprint| Verified { fingerprint, body });
        (verified, issuers)
    }

    /// Verifies a detached signature over `data`; returns the signer's fingerprint.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<String, OpenPgpError> {
        self.verify_detached_issuers(data, signature).0
    }

    /// [`Keyring::verify_detached`], plus the issuer key ids of every signature.
    pub fn verify_detached_issuers(
        &self,
        data: &[u8],
        signature: &[u8],
    ) -> (Result<String, OpenPgpError>, Vec<String>) {
        let outcome = Outcome::default();
        let helper = Helper::new(&self.certs, outcome.clone());
        let result = DetachedVerifierBuilder::from_bytes(signature)
            .and_then(|b| b.with_policy(&POLICY, None, helper))
            .and_then(|mut v| v.verify_bytes(data));
        let issuers = outcome.issuers();
        (outcome.settle(result), issuers)
    }

    /// What is known about each certificate, in keyring order.
    pub fn infos(&self) -> Vec<KeyInfo> {
        self.certs.iter().map(KeyInfo::of).collect()
    }

    /// The certificate whose primary key or one of whose subkeys has an id or fingerprint
    /// ending in `id` (hex, case-insensitive, at least 8 digits): its info and its public key,
    /// ASCII armored.
    pub fn find(&self, id: &str) -> Option<(KeyInfo, Vec<u8>)> {
        let want = id.to_ascii_uppercase().replace(' ', "");
        if want.len() < 8 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let cert = self.certs.iter().find(|c| {
            c.keys()
                .any(|k| k.key().fingerprint().to_hex().ends_with(&want))
        })?;
        let armored = cert.armored().to_vec().ok()?;
        Some((KeyInfo::of(cert), armored))
    }
}

/// What an administrator sees of a public key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInfo {
    /// The primary key's 16-digit id.
    pub long_id: String,
    pub fingerprint: String,
    /// The primary user id ("" if none).
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Expiry time (seconds since the epoch), if the key expires.
    pub expires: Option<i64>,
    /// The ids of its subkeys (signatures made by a subkey name these).
    pub subkeys: Vec<String>,
}

impl KeyInfo {
    fn of(cert: &Cert) -> KeyInfo {
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        let vc = cert.with_policy(&POLICY, None).ok();
        let name = vc
            .as_ref()
            .and_then(|vc| vc.primary_userid().ok())
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            .or_else(|| {
                cert.userids()
                    .next()
                    .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
            })
            .unwrap_or_default();
        let expires = vc
            .as_ref()
            .and_then(|vc| vc.primary_key().key_expiration_time())
            .map(secs);
        KeyInfo {
            long_id: cert.keyid().to_hex(),
            fingerprint: cert.fingerprint().to_hex(),
            name,
            created: secs(cert.primary_key().key().creation_time()),
            expires,
            subkeys: cert
                .keys()
                .subkeys()
                .map(|k| k.key().keyid().to_hex())
                .collect(),
        }
    }
}

/// What the verification helper found, shared with the caller: sequoia consumes the helper
/// and reports failures only as text. The third part collects the issuer key ids of every
/// signature seen (what an error about an unknown signer names).
#[derive(Clone, Default)]
struct Outcome(Rc<RefCell<Found>>);

/// The signer's fingerprint, the first failure, the issuers seen.
type Found = (Option<String>, Option<OpenPgpError>, Vec<String>);

impl Outcome {
    fn issuers(&self) -> Vec<String> {
        self.0.borrow().2.clone()
    }

    /// The signer's fingerprint if a good signature was found, else the most telling error.
    fn settle<T>(self, result: pgp::Result<T>) -> Result<String, OpenPgpError> {
        let (signer, failure, _) = self.0.take();
        match (result, signer) {
            (Ok(_), Some(fingerprint)) => Ok(fingerprint),
            (Ok(_), None) => Err(failure.unwrap_or(OpenPgpError::Malformed {
                reason: "no signature found".into(),
            })),
            (Err(e), _) => Err(failure.unwrap_or_else(|| malformed(e))),
        }
    }
}

fn malformed(e: pgp::anyhow::Error) -> OpenPgpError {
    OpenPgpError::Malformed {
        reason: e.to_string(),
    }
}

/// Removes the OpenPGP clear-sign armor without checking the signature (for the admin import,
/// which trusts its caller). Unsigned text passes through unchanged.
pub fn cleartext_body(text: &str) -> Result<String, OpenPgpError> {
    let Some(rest) = text.strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return Ok(text.to_string());
    };
    let bad = |reason: &str| OpenPgpError::Malformed {
        reason: reason.to_string(),
    };
    let mut lines = rest.split('\n');
    lines.next(); // the rest of the BEGIN line
    // Armor headers ("Hash: ...") end at the first empty line.
    for line in lines.by_ref() {
        if line.trim_end_matches('\r').is_empty() {
            break;
        }
    }
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line == "-----BEGIN PGP SIGNATURE-----" {
            ended = true;
            break;
        }
        body.push_str(line.strip_prefix("- ").unwrap_or(line));
        body.push('\n');
    }
    if !ended {
        return Err(bad("clear-signed text without a signature block"));
    }
    // The line break before the signature block belongs to the armor, not to the text.
    if body.ends_with('\n') {
        body.pop();
    }
    Ok(body)
}

fn key_id(handle: Option<&KeyHandle>) -> String {
    match handle {
        Some(KeyHandle::Fingerprint(f)) => pgp::KeyID::from(f).to_hex(),
        Some(KeyHandle::KeyID(k)) => k.to_hex(),
        None => "(no issuer)".to_string(),
    }
}

struct Helper<'a> {
    certs: &'a [Cert],
    outcome: Outcome,
}

impl<'a> Helper<'a> {
    fn new(certs: &'a [Cert], outcome: Outcome) -> Self {
        Helper { certs, outcome }
    }

    /// Whether the key that made a good signature is usable now: the certificate and the
    /// signing key must both be alive and unrevoked at this moment.
    fn check_now(
        ka: &ValidErasedKeyAmalgamation<'_, pgp::packet::key::PublicParts>,
    ) -> Result<(), OpenPgpError> {
        let key_id = ka.key().keyid().to_hex();
        let cert = ka.cert();
        let vc = match cert.with_policy(&POLICY, None) {
            Ok(vc) => vc,
            Err(e) => return Err(classify(cert, &key_id, e)),
        };
        if let RevocationStatus::Revoked(_) = vc.revocation_status() {
            return Err(OpenPgpError::RevokedKey { key_id });
        }
        if vc.alive().is_err() {
            return Err(OpenPgpError::ExpiredKey { key_id });
        }
        let key_now = vc
            .keys()
            .key_handle(ka.key().key_handle())
            .next()
            .ok_or_else(|| OpenPgpError::UnusableKey {
                key_id: key_id.clone(),
                reason: "not valid now".into(),
            })?;
        if let RevocationStatus::Revoked(_) = key_now.revocation_status() {
            return Err(OpenPgpError::RevokedKey { key_id });
        }
        if key_now.alive().is_err() {
            return Err(OpenPgpError::ExpiredKey { key_id });
        }
        Ok(())
    }
}

/// Names why a certificate is not valid: revoked, expired, or something else.
fn classify(cert: &Cert, key_id: &str, error: pgp::anyhow::Error) -> OpenPgpError {
    let key_id = key_id.to_string();
    if let RevocationStatus::Revoked(_) = cert.revocation_status(&POLICY, None) {
        return OpenPgpError::RevokedKey { key_id };
    }
    let expired = cert
        .with_policy(&POLICY, None)
        .map(|vc| vc.alive().is_err())
        .unwrap_or(false)
        || matches!(
            error.downcast_ref::<pgp::Error>(),
            Some(pgp::Error::Expired(_))
        );
    if expired {
        return OpenPgpError::ExpiredKey { key_id };
    }
    OpenPgpError::UnusableKey {
        key_id,
        reason: error.to_string(),
    }
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> pgp::Result<Vec<Cert>> {
        Ok(self.certs.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> pgp::Result<()> {
        let mut found = false;
        for layer in structure.into_iter() {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                let issuer = match &result {
                    Ok(good) => key_id(good.sig.get_issuers().first()),
                    Err(VerificationError::MissingKey { sig }) => key_id(sig.get_issuers().first()),
                    Err(VerificationError::UnboundKey { sig, .. }) => {
                        key_id(sig.get_issuers().first())
                    }
                    Err(VerificationError::BadKey { sig, .. }) => key_id(sig.get_issuers().first()),
                    Err(VerificationError::BadSignature { sig, .. }) => {
                        key_id(sig.get_issuers().first())
                    }
                    Err(VerificationError::MalformedSignature { sig, .. }) => {
                        key_id(sig.get_issuers().first())
                    }
                    Err(_) => "(unknown)".to_string(),
                };
                self.outcome.0.borrow_mut().2.push(issuer);
                let failure = match result {
                    Ok(good) => match Helper::check_now(&good.ka) {
                        Ok(()) => {
                            let mut o = self.outcome.0.borrow_mut();
                            o.0 = Some(good.ka.cert().fingerprint().to_hex());
                            o.1 = None;
                            found = true;
                            continue;
                        }
                        Err(e) => e,
                    },
                    Err(VerificationError::MissingKey { sig }) => OpenPgpError::UnknownKey {
                        key_id: key_id(sig.get_issuers().first()),
                    },
                    Err(VerificationError::UnboundKey { sig, cert, error }) => {
                        classify(cert, &key_id(sig.get_issuers().first()), error)
                    }
                    Err(VerificationError::BadKey { ka, error, .. }) => {
                        let key_id = ka.key().keyid().to_hex();
                        match Helper::check_now(&ka) {
                            Err(e) => e,
                            Ok(()) => OpenPgpError::UnusableKey {
                                key_id,
                                reason: error.to_string(),
                            },
                        }
                    }
                    Err(VerificationError::BadSignature { ka, .. }) => OpenPgpError::BadSignature {
                        key_id: ka.key().keyid().to_hex(),
                    },
                    Err(VerificationError::MalformedSignature { error, .. }) => {
                        OpenPgpError::Malformed {
                            reason: error.to_string(),
                        }
                    }
                    Err(VerificationError::UnknownSignature { .. }) => OpenPgpError::Malformed {
                        reason: "unknown signature packet".into(),
                    },
                    Err(e) => OpenPgpError::Malformed {
                        reason: e.to_string(),
                    },
                };
                let mut o = self.outcome.0.borrow_mut();
                if o.1.is_none() {
                    o.1 = Some(failure);
                }
            }
        }
        if found {
            return Ok(());
        }
        let mut o = self.outcome.0.borrow_mut();
        let failure = o.1.get_or_insert(OpenPgpError::Malformed {
            reason: "no signature found".into(),
        });
        Err(pgp::anyhow::anyhow!(failure.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = ArchiveKey::generate("mbd test <t@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
        let text = b"Origin: x\nLabel: y\n";
        let signed = key.clearsign(text).unwrap();
        let v = key.keyring().verify_cleartext(&signed).unwrap();
        assert_eq!(v.fingerprint, key.fingerprint());
        assert_eq!(v.body, text);
        let body = cleartext_body(std::str::from_utf8(&signed).unwrap()).unwrap();
        assert_eq!(body.as_bytes(), text);

        let sig = key.detached_sign(text).unwrap();
        assert_eq!(
            key.keyring().verify_detached(text, &sig).unwrap(),
            key.fingerprint()
        );
        assert!(matches!(
            key.keyring().verify_detached(b"Origin: z\n", &sig),
            Err(OpenPgpError::BadSignature { .. })
        ));
    }

    #[test]
    fn unknown_signer_and_tampering_are_named() {
        let a = ArchiveKey::generate("a <a@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
        let b = ArchiveKey::generate("b <b@mbd.invalid>", KeyAlgorithm::Ed25519).unwrap();
        let signed = a.clearsign(b"Source: x\nVersion: 1\n").unwrap();
        match b.keyring().verify_cleartext(&signed) {
            Err(OpenPgpError::UnknownKey { key_id }) => assert_eq!(key_id.len(), 16),
            other => panic!("{other:?}"),
        }
        let tampered = String::from_utf8(signed)
            .unwrap()
            .replace("Version: 1", "Version: 2");
        assert!(matches!(
            a.keyring().verify_cleartext(tampered.as_bytes()),
            Err(OpenPgpError::BadSignature { .. })
        ));
        assert!(matches!(
            a.keyring().verify_cleartext(b"Source: x\n"),
            Err(OpenPgpError::NotSigned)
        ));
    }

    #[test]
    fn key_file_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/archive.key");
        let (k1, created) =
            ArchiveKey::load_or_generate(&path, "x <x@mbd.invalid>", KeyAlgorithm::Ed25519)
                .unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) =
            ArchiveKey::load_or_generate(&path, "x <x@mbd.invalid>", KeyAlgorithm::Ed25519)
                .unwrap();
        assert!(!created);
        assert_eq!(k1.fingerprint(), k2.fingerprint());
        assert!(ArchiveKey::from_bytes(&k1.public_armored()).is_err());
    }
}
