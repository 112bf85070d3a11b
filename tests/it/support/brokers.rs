//! External MQTT brokers for the multi-process tests: Debian's Mosquitto and Apache ActiveMQ,
//! each run as a separate child process on a free loopback port, with its configuration and
//! its persistent store in a temp dir (never the system services).
//!
//! `start` returns once the broker's MQTT port accepts connections. `stop` ends the broker
//! gracefully (SIGTERM: Mosquitto saves its database, ActiveMQ closes KahaDB), `kill9` crashes
//! it, `restart` starts it again on the same port with the same store. Dropping the value
//! kills the process. A test that finds a broker missing prints `skipped: ...` and returns
//! (see `Mosquitto::unavailable` and `ActiveMq::unavailable`).

use super::node::free_port;
use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A broker child process with its log file, killed on drop.
struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Process {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    fn log_contents(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Poll until `port` accepts a TCP connection; panics with the broker's log if the process
    /// exits or `deadline` passes.
    fn wait_for_port(&mut self, port: u16, deadline: Duration) -> Duration {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return started.elapsed();
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "{} exited ({status}) before listening on {port}\n{}",
                    self.name,
                    self.log_contents()
                );
            }
            if started.elapsed() > deadline {
                panic!(
                    "{} not listening on {port} after {deadline:?}\n{}",
                    self.name,
                    self.log_contents()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait up to `grace` (then SIGKILL and panic: a broker that ignores SIGTERM
    /// would make `stop` a crash in disguise).
    fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let end = Instant::now() + grace;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} ignored SIGTERM for {grace:?}\n{}",
                    self.name,
                    self.log_contents()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// First existing executable among `candidates` and the `PATH` entries for `name`.
fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Mosquitto
// ---------------------------------------------------------------------------------------------

/// The settings of `mosquitto.conf` that decide what a broker keeps for an offline slave.
#[derive(Clone, Debug)]
pub struct MosquittoOpts {
    /// `max_queued_messages`: QoS 1/2 messages queued per client beyond those in flight; past
    /// it Mosquitto silently drops the *newest* messages (1000 by default, 0 = no limit).
    pub max_queued_messages: u32,
    /// `max_inflight_messages`: QoS 1/2 messages in flight per client (20 by default).
    pub max_inflight_messages: u32,
    /// `max_packet_size` is this plus 1 KiB for headers. gscluster sends at most 192 KiB of
    /// payload per message.
    pub max_message_bytes: u32,
    /// More lines for the listener (TLS: cafile, certfile, keyfile, require_certificate…).
    pub extra: Vec<String>,
}

impl Default for MosquittoOpts {
    /// What docs/brokers.md recommends for gscluster.
    fn default() -> Self {
        MosquittoOpts {
            max_queued_messages: 100_000,
            max_inflight_messages: 20,
            max_message_bytes: 1024 * 1024,
            extra: Vec::new(),
        }
    }
}

/// Debian's Mosquitto (2.0) as a child process, persistence in its temp dir.
pub struct Mosquitto {
    pub port: u16,
    pub opts: MosquittoOpts,
    dir: tempfile::TempDir,
    binary: PathBuf,
    process: Process,
}

impl Mosquitto {
    fn binary() -> Option<PathBuf> {
        find_program("mosquitto", &["/usr/sbin/mosquitto"])
    }

    /// Why the tests cannot run Mosquitto here, if they cannot.
    pub fn unavailable() -> Option<String> {
        match Mosquitto::binary() {
            Some(_) => None,
            None => Some("mosquitto not installed (apt-get install mosquitto)".into()),
        }
    }

    /// The mosquitto.conf the tests (and docs/brokers.md) use.
    pub fn config(port: u16, store: &Path, opts: &MosquittoOpts) -> String {
        // Listener options (TLS) apply to the listener defined last: append them.
        let extra: String = opts.extra.iter().map(|l| format!("{l}\n")).collect();
        format!(
            "# gscluster test broker\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             # Stay as the user that runs the tests: as root, Mosquitto would otherwise switch\n\
             # to `mosquitto`, which cannot write to the temp dir (no effect when not root).\n\
             user root\n\
             # Sessions, subscriptions and queued messages survive a restart ...\n\
             persistence true\n\
             persistence_location {store}/\n\
             persistence_file mosquitto.db\n\
             # ... and a kill -9: save after every change, not only every 30 min and at exit.\n\
             autosave_on_changes true\n\
             autosave_interval 1\n\
             # Offline sessions never expire (the default, spelled out).\n\
             # persistent_client_expiration is left unset.\n\
             max_queued_messages {queued}\n\
             max_queued_bytes 0\n\
             max_inflight_messages {inflight}\n\
             # Whole packets; gscluster's are at most 192 KiB of payload plus headers. (The older\n\
             # payload limit message_size_limit is deprecated in 2.0 in favour of this one.)\n\
             max_packet_size {packet}\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             connection_messages true\n\
             log_timestamp true\n",
            store = store.display(),
            queued = opts.max_queued_messages,
            inflight = opts.max_inflight_messages,
            packet = opts.max_message_bytes + 1024,
        ) + &extra
    }

    /// Start on a free loopback port; `None` (after printing `skipped: ...`) when Mosquitto is
    /// not installed.
    pub fn start(opts: MosquittoOpts) -> Option<Mosquitto> {
        if let Some(why) = Mosquitto::unavailable() {
            println!("skipped: {why}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let store = dir.path().join("store");
        fs::create_dir_all(&store).unwrap();
        fs::write(
            dir.path().join("mosquitto.conf"),
            Mosquitto::config(port, &store, &opts),
        )
        .unwrap();
        let binary = Mosquitto::binary().unwrap();
        let process = Mosquitto::spawn(&binary, dir.path());
        let mut m = Mosquitto {
            port,
            opts,
            dir,
            binary,
            process,
        };
        m.process.wait_for_port(port, Duration::from_secs(20));
        Some(m)
    }

    fn spawn(binary: &Path, dir: &Path) -> Process {
        let mut cmd = Command::new(binary);
        cmd.arg("-c").arg(dir.join("mosquitto.conf"));
        Process::spawn("mosquitto", cmd, &dir.join("mosquitto.log"))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log_contents(&self) -> String {
        self.process.log_contents()
    }

    /// The persistence database (written at autosave and at exit).
    pub fn store_file(&self) -> PathBuf {
        self.dir.path().join("store/mosquitto.db")
    }

    /// Graceful stop: Mosquitto writes its database on SIGTERM.
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stop if running, then start again on the same port with the same store.
    pub fn restart(&mut self) {
        if self.process.is_running() {
            self.stop();
        }
        self.process = Mosquitto::spawn(&self.binary, self.dir.path());
        self.process
            .wait_for_port(self.port, Duration::from_secs(20));
    }
}

// ---------------------------------------------------------------------------------------------
// ActiveMQ
// ---------------------------------------------------------------------------------------------

/// Debian's layout (package `activemq` 5.17): the launcher jar is
/// `/usr/share/activemq/bin/activemq.jar` (`org.apache.activemq.console.Main`), the broker's jars
/// are in `/usr/share/activemq/lib` and `lib/optional` (symlinks into `/usr/share/java`), and the
/// packaged instance config is `/etc/activemq/instances-available/main/activemq.xml`, used by
/// the init script only. We run the launcher directly, as `/usr/bin/activemq` would, with our
/// own `activemq.base`, `activemq.conf` and `activemq.data` in a temp dir.
const ACTIVEMQ_HOME: &str = "/usr/share/activemq";

/// The MQTT transport (`activemq-mqtt.jar`, in Debian's lib dir) decodes frames with
/// `org.fusesource.mqtt.codec.*` from `mqtt-client.jar`, which Debian ships separately in
/// `libmqtt-client-java` and does not put on ActiveMQ's lib path. That jar is the only one
/// missing: its other dependency, `hawtbuf.jar`, is already in `/usr/share/activemq/lib`, and
/// hawtdispatch is only used by mqtt-client's own `MQTTProtocolCodec`, which ActiveMQ does not
/// load (it has its own `MQTTCodec`). The launcher adds every jar of `${activemq.base}/lib`, so a
/// symlink there is enough. Without it, the `mqtt://` connector fails at start-up with
/// "Transport scheme NOT recognized: [mqtt]".
const MQTT_CLIENT_JAR: &str = "/usr/share/java/mqtt-client.jar";

/// ActiveMQ 5.17 as a child process (`java -jar activemq.jar start`), KahaDB in its temp dir.
pub struct ActiveMq {
    pub port: u16,
    dir: tempfile::TempDir,
    java: PathBuf,
    process: Process,
    /// How long the last start took until the MQTT port accepted.
    pub last_start: Duration,
}

impl ActiveMq {
    fn java() -> Option<PathBuf> {
        find_program("java", &["/usr/lib/jvm/default-java/bin/java"])
    }

    /// Why the tests cannot run ActiveMQ here, if they cannot.
    pub fn unavailable() -> Option<String> {
        let launcher = Path::new(ACTIVEMQ_HOME).join("bin/activemq.jar");
        if !launcher.is_file() {
            return Some(format!(
                "activemq not installed ({} missing; apt-get install activemq)",
                launcher.display()
            ));
        }
        if !Path::new(MQTT_CLIENT_JAR).is_file() {
            return Some(format!(
                "libmqtt-client-java not installed ({MQTT_CLIENT_JAR} missing), which \
                 ActiveMQ's MQTT transport needs"
            ));
        }
        if ActiveMq::java().is_none() {
            return Some("no java runtime for activemq".into());
        }
        None
    }

    /// The activemq.xml the tests (and docs/brokers.md) use: one MQTT connector on loopback,
    /// KahaDB under `data`, no JMX, no web console (that lives in a separate jetty.xml, which
    /// this config does not import), no scheduler.
    pub fn config(port: u16, data: &Path) -> String {
        format!(
            r#"<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="gscluster"
          useJmx="false" persistent="true" dataDirectory="{data}"
          schedulePeriodForDestinationPurge="0" offlineDurableSubscriberTimeout="-1">
    <destinationPolicy>
      <policyMap>
        <policyEntries>
          <!-- Deltas go to durable subscriptions (one per slave session) on topics. Keep
               producer flow control off so a master is never blocked, and never expire. -->
          <policyEntry topic=">" producerFlowControl="false" expireMessagesPeriod="0"/>
        </policyEntries>
      </policyMap>
    </destinationPolicy>
    <persistenceAdapter>
      <!-- Journal writes are fsynced (the default), so a kill -9 keeps acknowledged messages.
           The store's lock is polled every second: a second broker sharing this store (a
           shared-store pair) takes over within about a second of the first one's death. -->
      <kahaDB directory="{data}/kahadb" journalDiskSyncStrategy="always">
        <locker><shared-file-locker lockAcquireSleepInterval="1000"/></locker>
      </kahaDB>
    </persistenceAdapter>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage limit="64 mb"/></memoryUsage>
        <storeUsage><storeUsage limit="1 gb"/></storeUsage>
        <tempUsage><tempUsage limit="256 mb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="mqtt"
        uri="mqtt://127.0.0.1:{port}?transport.defaultKeepAlive=60000&amp;wireFormat.maxFrameSize=1048576"/>
    </transportConnectors>
  </broker>
</beans>
"#,
            data = data.display(),
        )
    }

    /// Start on a free loopback port (waits up to 60 s for the MQTT port); `None` (after
    /// printing `skipped: ...`) when ActiveMQ or its MQTT jars are not installed.
    pub fn start() -> Option<ActiveMq> {
        if let Some(why) = ActiveMq::unavailable() {
            println!("skipped: {why}");
            return None;
        }
        let amq = ActiveMq::launch(None);
        println!("activemq listening after {:?}", amq.last_start);
        Some(amq)
    }

    /// The second broker of a shared-store pair: its own port and config, `self`'s KahaDB. It
    /// waits for the store's lock and opens its port only once it holds it, i.e. once `self`
    /// is dead. Returns at once; [`ActiveMq::wait_active`] waits for the takeover.
    pub fn start_standby(&self) -> ActiveMq {
        ActiveMq::launch(Some(self.dir.path().join("data")))
    }

    /// Wait until this broker accepts MQTT connections (a standby: until it took over).
    pub fn wait_active(&mut self, limit: Duration) -> Duration {
        self.last_start = self.process.wait_for_port(self.port, limit);
        self.last_start
    }

    /// `shared_data`: the data directory of the broker this one is the standby of.
    fn launch(shared_data: Option<PathBuf>) -> ActiveMq {
        let dir = tempfile::Builder::new()
            .prefix("activemq-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let base = dir.path();
        for sub in ["conf", "data", "lib"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        let data = shared_data.clone().unwrap_or_else(|| base.join("data"));
        std::os::unix::fs::symlink(MQTT_CLIENT_JAR, base.join("lib/mqtt-client.jar")).unwrap();
        fs::write(
            base.join("conf/activemq.xml"),
            ActiveMq::config(port, &data),
        )
        .unwrap();
        // ${activemq.conf} is on the classpath, so log4j 1.2 (Debian's lib/optional) finds this.
        fs::write(
            base.join("conf/log4j.properties"),
            "log4j.rootLogger=INFO, out\n\
             log4j.appender.out=org.apache.log4j.ConsoleAppender\n\
             log4j.appender.out.layout=org.apache.log4j.PatternLayout\n\
             log4j.appender.out.layout.ConversionPattern=%d %-5p [%c{1}] %m%n\n",
        )
        .unwrap();
        let java = ActiveMq::java().unwrap();
        let process = ActiveMq::spawn(&java, base);
        let mut amq = ActiveMq {
            port,
            dir,
            java,
            process,
            last_start: Duration::ZERO,
        };
        if shared_data.is_none() {
            amq.wait_active(Duration::from_secs(60));
        }
        amq
    }

    fn spawn(java: &Path, base: &Path) -> Process {
        let mut cmd = Command::new(java);
        cmd.arg("-Xms64m")
            .arg("-Xmx256m")
            .arg(format!("-Dactivemq.home={ACTIVEMQ_HOME}"))
            .arg(format!("-Dactivemq.base={}", base.display()))
            .arg(format!("-Dactivemq.conf={}", base.join("conf").display()))
            .arg(format!("-Dactivemq.data={}", base.join("data").display()))
            .arg("-jar")
            .arg(Path::new(ACTIVEMQ_HOME).join("bin/activemq.jar"))
            .arg("start")
            .arg(format!(
                "xbean:file:{}",
                base.join("conf/activemq.xml").display()
            ))
            .current_dir(base);
        Process::spawn("activemq", cmd, &base.join("activemq.log"))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log_contents(&self) -> String {
        self.process.log_contents()
    }

    pub fn kahadb_dir(&self) -> PathBuf {
        self.dir.path().join("data/kahadb")
    }

    /// Graceful stop (SIGTERM runs the broker's shutdown hook, which closes KahaDB).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(30));
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stop if running, then start again on the same port with the same KahaDB store.
    pub fn restart(&mut self) {
        if self.process.is_running() {
            self.stop();
        }
        self.process = ActiveMq::spawn(&self.java, self.dir.path());
        self.last_start = self
            .process
            .wait_for_port(self.port, Duration::from_secs(60));
        println!("activemq listening again after {:?}", self.last_start);
    }
}

// ---------------------------------------------------------------------------------------------
// NATS (MQTT over JetStream), a 3-member cluster
// ---------------------------------------------------------------------------------------------

/// Three `nats-server` processes (Debian's, 2.9) clustered on loopback, each with JetStream
/// (store in a temp dir) and an MQTT listener. MQTT sessions and QoS 1 messages live in
/// JetStream streams replicated on all three members (`stream_replicas` /
/// `consumer_replicas` 3: with the default, a dead member can leave a consumer without
/// quorum, stalled), so a client that moves to another member finds its session there.
pub struct NatsCluster {
    /// MQTT port of each member.
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    members: Vec<Process>,
}

impl NatsCluster {
    fn binary() -> Option<PathBuf> {
        find_program(
            "nats-server",
            &["/usr/sbin/nats-server", "/usr/bin/nats-server"],
        )
    }

    /// The config of member `i` of `n`: client, cluster and MQTT ports.
    pub fn config(i: usize, store: &Path, client: u16, routes: &[u16], mqtt: u16) -> String {
        let others: Vec<String> = (routes.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
            .collect();
        format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{client}\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             cluster {{ name: gscluster, listen: 127.0.0.1:{}, routes: [{}] }}\n\
             mqtt {{ listen: 127.0.0.1:{mqtt}, stream_replicas: 3, consumer_replicas: 3 }}\n",
            store.display(),
            routes[i],
            others.join(", ")
        )
    }

    /// Start three members and wait until JetStream has a leader; `None` (after printing
    /// `skipped: ...`) when nats-server is not installed.
    pub fn start() -> Option<NatsCluster> {
        let Some(binary) = NatsCluster::binary() else {
            println!("skipped: nats-server not installed (apt-get install nats-server)");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("nats-").tempdir().unwrap();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut members = Vec::new();
        for (i, &mqtt) in ports.iter().enumerate() {
            let conf = dir.path().join(format!("n{i}.conf"));
            let store = dir.path().join(format!("n{i}"));
            fs::write(
                &conf,
                NatsCluster::config(i, &store, free_port(), &routes, mqtt),
            )
            .unwrap();
            let mut cmd = Command::new(&binary);
            cmd.arg("-c").arg(&conf);
            members.push(Process::spawn(
                "nats-server",
                cmd,
                &dir.path().join(format!("n{i}.log")),
            ));
        }
        for (m, port) in members.iter_mut().zip(&ports) {
            m.wait_for_port(*port, Duration::from_secs(30));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !members
            .iter()
            .any(|m| m.log_contents().contains("new metadata leader"))
        {
            assert!(
                Instant::now() < deadline,
                "no JetStream leader after 30 s:\n{}",
                members[0].log_contents()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Some(NatsCluster {
            ports,
            _dir: dir,
            members,
        })
    }

    pub fn urls(&self) -> Vec<String> {
        (self.ports.iter())
            .map(|p| format!("mqtt://127.0.0.1:{p}"))
            .collect()
    }

    pub fn kill9(&mut self, member: usize) {
        self.members[member].kill9();
    }

    pub fn log_contents(&self, member: usize) -> String {
        self.members[member].log_contents()
    }
}
