//! Network namespaces for partition tests (root only, `ip netns`): every node in a namespace
//! of its own, joined to the test's namespace by two veth pairs —
//! - the **broker network**: a bridge in the test's namespace holding two addresses, `a()` and
//!   `b()`, where the test serves its two brokers (or the proxies in front of them); a node's
//!   link to it can be taken down (`cut`: a partition) or the route to `a()` alone dropped
//!   (`cut_from_a`: cut off from one broker but not the other);
//! - a **local link** that no fault touches, where the node reaches its own (stand-in)
//!   GeoServer, as a GeoServer on the same host would be.
//!
//! Names and subnets carry the test process's id, so two runs on one machine do not meet.
//! Everything is removed on drop.

use std::process::Command;

pub struct Netns {
    tag: String,
    octet: u32,
    nodes: usize,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Namespaces for `nodes` nodes, or why they cannot be made here.
    pub fn create(nodes: usize) -> Result<Netns, String> {
        let pid = std::process::id();
        let net = Netns {
            tag: format!("g{}", pid % 100_000),
            octet: 10 + pid % 240,
            nodes,
        };
        // On failure `net` is dropped, which removes whatever was made.
        net.setup().map(|()| net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace node `i` runs in.
    pub fn name(&self, i: usize) -> String {
        format!("gscluster-{}-{i}", self.tag)
    }

    fn broker_link(&self, i: usize) -> String {
        format!("{}a{i}", self.tag)
    }

    fn local_link(&self, i: usize) -> String {
        format!("{}l{i}", self.tag)
    }

    /// The first broker's address on the broker network.
    pub fn a(&self) -> String {
        format!("10.231.{}.1", self.octet)
    }

    /// The second broker's address on the broker network.
    pub fn b(&self) -> String {
        format!("10.231.{}.2", self.octet)
    }

    /// Where node `i` reaches the test's namespace on its local link (its GeoServer).
    pub fn local_host(&self, i: usize) -> String {
        format!("10.232.{}.{}", self.octet, 4 * i + 1)
    }

    fn setup(&self) -> Result<(), String> {
        let br = self.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", self.a()), "dev", &br])?;
        ip(&["addr", "add", &format!("{}/24", self.b()), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..self.nodes {
            let ns = self.name(i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let (a, l) = (self.broker_link(i), self.local_link(i));
            ip(&[
                "link", "add", &a, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &a, "master", &br, "up"])?;
            let node_a = format!("10.231.{}.{}/24", self.octet, 10 + i);
            ip(&["-n", &ns, "addr", "add", &node_a, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&[
                "link", "add", &l, "type", "veth", "peer", "name", "eth1", "netns", &ns,
            ])?;
            let here = format!("{}/30", self.local_host(i));
            ip(&["addr", "add", &here, "dev", &l])?;
            ip(&["link", "set", &l, "up"])?;
            let there = format!("10.232.{}.{}/30", self.octet, 4 * i + 2);
            ip(&["-n", &ns, "addr", "add", &there, "dev", "eth1"])?;
            ip(&["-n", &ns, "link", "set", "eth1", "up"])?;
        }
        Ok(())
    }

    /// Partition: node `i`'s link to the broker network goes down.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.broker_link(i), "down"]).unwrap();
    }

    /// Node `i` loses the route to the first broker, keeps the second.
    pub fn cut_from_a(&self, i: usize) {
        let a = format!("{}/32", self.a());
        ip(&["-n", &self.name(i), "route", "replace", "blackhole", &a]).unwrap();
    }

    /// Node `i` is whole again (both faults undone; either may not be in force).
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.broker_link(i), "up"]).unwrap();
        let a = format!("{}/32", self.a());
        let _ = ip(&["-n", &self.name(i), "route", "del", "blackhole", &a]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.name(i)]);
            let _ = ip(&["link", "del", &self.broker_link(i)]);
            let _ = ip(&["link", "del", &self.local_link(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
