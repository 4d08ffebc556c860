//! Shutdown over a real socket (r14, item 6): requests a client abandoned while the engine was
//! still working on them do not keep the log from being synced and closed.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use idgraph_engine::{Clock, Engine, EngineConfig, RandomMpids, SystemClock};
use idgraph_model::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ServerConfig;

/// A gate engine calls wait at (through the clock) while it is closed.
#[derive(Debug, Default)]
struct Gate {
    /// Whether it is closed, and how many calls wait at it.
    state: Mutex<(bool, u32)>,
    changed: Condvar,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        self.state.lock().unwrap().0 = closed;
        self.changed.notify_all();
    }

    fn n_waiting(&self) -> u32 {
        self.state.lock().unwrap().1
    }
}

/// The system clock, behind the gate: an engine call that reads it blocks while the gate is closed,
/// as a slow request would.
#[derive(Debug)]
struct GatedClock(Arc<Gate>);

impl Clock for GatedClock {
    fn now(&self) -> Timestamp {
        let mut state = self.0.state.lock().unwrap();
        state.1 += 1;
        while state.0 {
            state = self.0.changed.wait(state).unwrap();
        }
        state.1 -= 1;
        SystemClock.now()
    }
}

/// An identify request over a new connection; the connection.
async fn send_identify(address: std::net::SocketAddr, email: &str) -> TcpStream {
    let body =
        format!(r#"{{"environment":"development","known_identities":{{"email":"{email}"}}}}"#);
    let request = format!(
        "POST /v1/identify HTTP/1.1\r\nhost: x\r\nauthorization: Basic ZGV2LWtleTpkZXYtc2VjcmV0\r\n\
         content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A running server.
struct Running {
    address: std::net::SocketAddr,
    /// Starts shutdown.
    stop: tokio::sync::oneshot::Sender<()>,
    /// `serve`, answering once it stopped.
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The engine, to look at after `serve` returned (if something still holds it).
    engine: Weak<Engine>,
}

/// A server over an engine whose calls wait at `gate`.
async fn start(gate: &Arc<Gate>, config: ServerConfig) -> Running {
    let workspaces = config.workspaces.iter().map(|w| w.workspace.clone()).collect();
    let engine = Arc::new(Engine::in_memory(
        EngineConfig::new(workspaces),
        Box::new(GatedClock(Arc::clone(gate))),
        Box::new(RandomMpids),
    ));
    let weak = Arc::downgrade(&engine);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let serving = tokio::spawn(crate::serve_shared(config, engine, listener, shutdown));
    Running { address, stop, serving, engine: weak }
}

/// r14, item 6: a request the client abandoned while the engine works on it still holds the
/// engine when shutdown begins; the server waits for it (within the deadline), then syncs and
/// closes the log and stops cleanly instead of failing with "engine still in use".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_an_abandoned_slow_request_does_not_keep_the_log_from_closing() {
    let gate = Arc::new(Gate::default());
    let config = ServerConfig::development("127.0.0.1:0".parse().unwrap(), "unused".into());
    let server = start(&gate, config).await;
    abandon_a_slow_request(&gate, &server).await;
    server.stop.send(()).unwrap();
    let opener = Arc::clone(&gate);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        opener.set_closed(false);
    });
    let res = tokio::time::timeout(Duration::from_secs(5), server.serving).await.unwrap().unwrap();
    assert!(res.is_ok(), "{res:?}");
    assert!(server.engine.upgrade().is_none(), "the engine was closed");
}

/// One answered identify, then one whose client leaves while the engine works on it (waiting at
/// the gate).
async fn abandon_a_slow_request(gate: &Gate, server: &Running) {
    let mut answered = String::new();
    send_identify(server.address, "a@x").await.read_to_string(&mut answered).await.unwrap();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    // The same again: an answer that changes nothing, whose entry is queued, not synced.
    answered.clear();
    send_identify(server.address, "a@x").await.read_to_string(&mut answered).await.unwrap();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

    gate.set_closed(true);
    let abandoned = send_identify(server.address, "b@x").await;
    until("the engine works on the request", || gate.n_waiting() == 1).await;
    drop(abandoned);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// r14, items 6 and 7: an engine call still running at the shutdown deadline does not make
/// shutdown wait longer, nor skip the final sync: `serve` syncs the log and says why it did not
/// close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_an_engine_call_past_the_shutdown_deadline_still_gets_the_log_synced() {
    let gate = Arc::new(Gate::default());
    let mut config = ServerConfig::development("127.0.0.1:0".parse().unwrap(), "unused".into());
    config.shutdown_timeout = Duration::from_millis(500);
    let server = start(&gate, config).await;
    abandon_a_slow_request(&gate, &server).await;
    let started = Instant::now();
    server.stop.send(()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), server.serving).await.unwrap().unwrap();
    let elapsed = started.elapsed();
    let engine = server.engine.upgrade().expect("the stuck engine call holds the engine");
    gate.set_closed(false);
    let err = res.unwrap_err().to_string();
    assert!(err.contains("engine work still running"), "{err}");
    assert!(err.contains("synced up to sequence 2"), "{err}");
    assert!(elapsed < Duration::from_millis(2000), "stopped after {elapsed:?}");
    assert_eq!(engine.log().durable_seq(), engine.log().assigned_seq());
}
