//! A pod's events, as `kubectl describe` shows them: type, reason, message, a count and the
//! first and last time. Repeats of the same (reason, container, message) are folded into one
//! event with a count, as the kubelet's event recorder does. Kept in `events.json` in the
//! pod's directory, newest last, at most [`MAX_EVENTS`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{shim, state};

pub const MAX_EVENTS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub message: String,
    pub count: u32,
    pub first_timestamp: String,
    pub last_timestamp: String,
}

#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    events: Vec<Event>,
}

impl EventLog {
    /// The log at `path`, with what an earlier daemon recorded there.
    pub fn open(path: PathBuf) -> Self {
        let events = state::read_json(&path).ok().flatten().unwrap_or_default();
        Self { path, events }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn normal(&mut self, reason: &str, container: Option<&str>, message: String) {
        self.record("Normal", reason, container, message);
    }

    pub fn warning(&mut self, reason: &str, container: Option<&str>, message: String) {
        self.record("Warning", reason, container, message);
    }

    fn record(&mut self, event_type: &str, reason: &str, container: Option<&str>, message: String) {
        let now = shim::now_rfc3339();
        let same = self.events.iter().position(|e| {
            e.reason == reason && e.container.as_deref() == container && e.message == message
        });
        match same {
            Some(index) => {
                let mut event = self.events.remove(index);
                event.count += 1;
                event.last_timestamp = now;
                self.events.push(event);
            }
            None => self.events.push(Event {
                event_type: event_type.to_owned(),
                reason: reason.to_owned(),
                container: container.map(str::to_owned),
                message,
                count: 1,
                first_timestamp: now.clone(),
                last_timestamp: now,
            }),
        }
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
        if let Err(error) = state::write_json(&self.path, &self.events) {
            tracing::warn!("recording an event: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_not_repeated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.json");
        let mut log = EventLog::open(path.clone());
        log.normal("Started", Some("app"), "Started container app".into());
        log.warning(
            "BackOff",
            Some("app"),
            "Back-off restarting failed container".into(),
        );
        log.normal("Started", Some("app"), "Started container app".into());
        let reasons: Vec<(&str, u32)> = log
            .events()
            .iter()
            .map(|e| (e.reason.as_str(), e.count))
            .collect();
        assert_eq!(reasons, [("BackOff", 1), ("Started", 2)]);
        // A new daemon reads them back.
        assert_eq!(EventLog::open(path).events().len(), 2);
        // A corrupt file is a fresh log, not a crash.
        std::fs::write(dir.path().join("bad.json"), "{").expect("write");
        assert!(EventLog::open(dir.path().join("bad.json"))
            .events()
            .is_empty());
    }
}
