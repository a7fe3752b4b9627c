//! `mbd events`: follows the daemon's live event stream (`/api/events/stream`, server-sent
//! events) and prints each event; with `--exit-on`, ends at the first event of those kinds
//! with a status a CI pipeline can test ("dput, then wait for the result"): 0, or 1 when the
//! kind is one of `--fail-on` (FAILED and REJECTED by default).
//!
//! Events of the last hour are replayed first when a version is given (an upload decided
//! before the follower connected is not missed), else only new ones; `--since` sets it.

use super::client::ClientError;
use crate::incoming::{Event, EventKind};
use std::io::BufRead;

/// What to follow and when to stop.
#[derive(Debug, Clone, Default)]
pub struct Follow {
    /// The daemon's base URL.
    pub url: String,
    pub source: Option<String>,
    pub version: Option<String>,
    pub distribution: Option<String>,
    /// Replay stored events from this time (seconds since the epoch).
    pub since: Option<i64>,
    /// End at the first event of these kinds.
    pub exit_on: Vec<EventKind>,
    /// Of those, the kinds that end with status 1.
    pub fail_on: Vec<EventKind>,
}

/// How following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// An event of an `--exit-on` kind: whether it is one of `--fail-on`.
    At { event: String, failed: bool },
    /// The daemon closed the stream.
    Closed,
}

/// Kinds from a comma-separated list (`INSTALLED,FAILED`).
pub fn kinds(list: &str) -> Result<Vec<EventKind>, ClientError> {
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            EventKind::parse(k).ok_or_else(|| {
                ClientError::Usage(format!(
                    "'{k}' is not an event kind (REJECTED, ACCEPTED, PACKAGING, BUILDING, BUILT, INSTALLED, FAILED)"
                ))
            })
        })
        .collect()
}

/// One line for an event: `KIND source version distribution: reason`.
pub fn line(e: &Event) -> String {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!(
        "{kind} {} {} {}: {}",
        e.source, e.version, e.distribution, e.reason
    )
}

impl Follow {
    fn stream_url(&self, now: i64) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &self.source {
            q.append_pair("source", s);
        }
        if let Some(d) = &self.distribution {
            q.append_pair("distribution", d);
        }
        let since = self
            .since
            .or_else(|| self.version.as_ref().map(|_| now - 3600));
        if let Some(t) = since {
            q.append_pair("since", &t.to_string());
        }
        format!("{}/api/events/stream?{}", self.url, q.finish())
    }

    fn wanted(&self, e: &Event) -> bool {
        self.version.as_deref().is_none_or(|v| e.version == v)
    }

    /// Follows the stream, calling `print` with each wanted event's line, until an
    /// `--exit-on` event or the end of the stream.
    pub fn run(&self, now: i64, print: &mut dyn FnMut(&str)) -> Result<Ended, ClientError> {
        let url = self.stream_url(now);
        let transport = |reason: String| ClientError::Transport {
            url: url.clone(),
            reason,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(&url)
            .header("Accept", "text/event-stream")
            .call()
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ClientError::Refused {
                status,
                detail: format!("{url}: the event stream was refused"),
            });
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| transport(e.to_string()))?;
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Event>(data.trim()) else {
                continue;
            };
            if !self.wanted(&event) {
                continue;
            }
            let shown = self::line(&event);
            print(&shown);
            if self.exit_on.contains(&event.kind) {
                return Ok(Ended::At {
                    event: shown,
                    failed: self.fail_on.contains(&event.kind),
                });
            }
        }
        Ok(Ended::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_and_checked() {
        assert_eq!(
            kinds("INSTALLED, failed,").unwrap(),
            [EventKind::Installed, EventKind::Failed]
        );
        assert!(kinds("DONE").is_err());
    }

    #[test]
    fn a_version_replays_the_last_hour() {
        let f = Follow {
            url: "http://h:8066".into(),
            source: Some("x y".into()),
            version: Some("1.0".into()),
            ..Follow::default()
        };
        assert_eq!(
            f.stream_url(10_000),
            "http://h:8066/api/events/stream?source=x+y&since=6400"
        );
        let g = Follow {
            url: "http://h".into(),
            ..Follow::default()
        };
        assert_eq!(g.stream_url(10_000), "http://h/api/events/stream?");
    }
}
