//! MQTT: the embedded broker and the node's connection, plus the topic names of the contract.

pub mod broker;
pub mod connection;

/// Topic names: `{prefix}/{group}/delta/{origin}`, `{prefix}/{group}/status/{node}`.
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

    /// The origin named by a delta topic, if `topic` is one.
    pub fn delta_origin<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(self.base.as_str())?
            .strip_prefix("/delta/")
            .filter(|o| !o.is_empty() && !o.contains('/'))
    }

    /// A node's retained status.
    pub fn status(&self, node: &str) -> String {
        format!("{}/status/{node}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_topics_round_trip() {
        let t = Topics::new("gscluster", "prod");
        assert_eq!(t.delta("gs-a"), "gscluster/prod/delta/gs-a");
        assert_eq!(t.delta_origin("gscluster/prod/delta/gs-a"), Some("gs-a"));
        assert_eq!(t.delta_origin("gscluster/other/delta/gs-a"), None);
        assert_eq!(t.delta_origin("gscluster/prod/delta/a/b"), None);
        assert_eq!(t.delta_filter(), "gscluster/prod/delta/+");
    }
}
