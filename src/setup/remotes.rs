//! Remotes: the peers asked for (`--remotes URL...`), added with `update`; with `pca` each
//! is prepared (its key fetched), checked and activated. A first peering's activation fails
//! until the other side knows us; the remote then waits as auto-reactivate (A).

use super::{Setup, entry, status_word};
use crate::config::ConfigError;

impl Setup<'_> {
    pub(super) fn remotes_step(&mut self) -> Result<(), ConfigError> {
        for spec in self.req.remotes.clone() {
            let url = crate::remote::normalize_url(&spec)
                .map_err(|e| ConfigError::Setup(e.to_string()))?;
            let stored = self.state.get::<crate::remote::Remote>(&url)?;
            let mut e = entry("remote", &url, "missing");
            if let Some(r) = &stored {
                e.status = status_word(&r.status).to_string();
                e.message = r.status.message.clone();
            }
            if stored.is_none() && self.req.update {
                crate::remote::add(self.state, &url, "")
                    .map_err(|e| ConfigError::Setup(e.to_string()))?;
                e.status = "exists".to_string();
                e.actions.push("added".to_string());
            }
            let exists = stored.is_some() || self.req.update;
            if self.req.pca && exists {
                let outcome = self.env.act_remote(self.state, &url, "pca");
                let r = self.state.get::<crate::remote::Remote>(&url)?;
                e.actions.push("pca".to_string());
                if let Some(r) = r {
                    e.status = status_word(&r.status).to_string();
                    e.message = r.status.message.clone();
                }
                if let Err(why) = outcome {
                    e.status = "failed".to_string();
                    e.message = why;
                }
            }
            self.report.push(e);
        }
        Ok(())
    }
}
