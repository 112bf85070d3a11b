//! MQTT: the embedded broker and the node's connection, plus the topic names of the contract.

pub mod broker;
pub mod client;
pub mod connection;
pub mod retained;

pub use client::{Client, Closing, Message};

/// A received topic, by kind, with the node it names.
#[derive(Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    Delta(&'a str),
    Ask(&'a str),
    Answer(&'a str),
    Status(&'a str),
    Other,
}

/// Topic names: `{prefix}/{group}/delta/{origin}`, `{prefix}/{group}/sync/ask|answer/{node}`,
/// `{prefix}/{group}/status/{node}`.
#[derive(Clone, Debug)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, group: &str) -> Self {
        Topics {
            base: format!("{prefix}/{group}"),
        }
    }

    /// Where `origin` publishes its Deltas.
    pub fn delta(&self, origin: &str) -> String {
        format!("{}/delta/{origin}", self.base)
    }

    /// Every origin's Deltas.
    pub fn delta_filter(&self) -> String {
        format!("{}/delta/+", self.base)
    }

    /// Where `asker` sends resync asks.
    pub fn sync_ask(&self, asker: &str) -> String {
        format!("{}/sync/ask/{asker}", self.base)
    }

    /// Every node's resync asks (subscribed by publishing nodes).
    pub fn sync_ask_filter(&self) -> String {
        format!("{}/sync/ask/+", self.base)
    }

    /// Where answers to `asker`'s resync asks go.
    pub fn sync_answer(&self, asker: &str) -> String {
        format!("{}/sync/answer/{asker}", self.base)
    }

    /// What a received topic is.
    pub fn classify<'a>(&self, topic: &'a str) -> Topic<'a> {
        let Some(rest) = topic
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Topic::Other;
        };
        let (kind, node) = match rest.rsplit_once('/') {
            Some(x) => x,
            None => return Topic::Other,
        };
        if node.is_empty() {
            return Topic::Other;
        }
        match kind {
            "delta" => Topic::Delta(node),
            "sync/ask" => Topic::Ask(node),
            "sync/answer" => Topic::Answer(node),
            "status" => Topic::Status(node),
            _ => Topic::Other,
        }
    }

    /// A node's retained status.
    pub fn status(&self, node: &str) -> String {
        format!("{}/status/{node}", self.base)
    }

    /// Every node's status.
    pub fn status_filter(&self) -> String {
        format!("{}/status/+", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_topics_round_trip() {
        let t = Topics::new("gscluster", "prod");
        assert_eq!(t.delta("gs-a"), "gscluster/prod/delta/gs-a");
        assert_eq!(t.classify("gscluster/other/delta/gs-a"), Topic::Other);
        assert_eq!(t.classify("gscluster/prod/delta/a/b"), Topic::Other);
        assert_eq!(t.delta_filter(), "gscluster/prod/delta/+");
        assert_eq!(
            t.classify("gscluster/prod/delta/gs-a"),
            Topic::Delta("gs-a")
        );
        assert_eq!(t.classify(&t.sync_ask("gs-b")), Topic::Ask("gs-b"));
        assert_eq!(t.classify(&t.sync_answer("gs-b")), Topic::Answer("gs-b"));
        assert_eq!(t.classify(&t.status("gs-b")), Topic::Status("gs-b"));
        assert_eq!(t.classify("gscluster/prod/other/gs-b"), Topic::Other);
        assert_eq!(t.classify("gscluster/prod/delta/"), Topic::Other);
    }
}
