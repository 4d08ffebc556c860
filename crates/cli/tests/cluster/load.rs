//! Concurrent client load spread over every node: each thread sends logins of new customers, one
//! after the other, to the nodes in turn, and remembers every acknowledged one (a 200 with an
//! MPID). An unanswered login (no connection, a timeout, a 5xx: no writer right now, the writer
//! just died) is sent again with the same `request_id` to the next node until it is acknowledged,
//! as a client of the cluster is told to; a 4xx is a refusal the test reports.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use crate::node::{self, Answer, Identities, client};

/// How long a client waits for the answer to a login before it sends it again. Far above a
/// login's latency (milliseconds), below the 15 s a writer may spend publishing through a
/// stream leader election: the retry (same `request_id`) then meets the first attempt's
/// outcome.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two attempts of the same login.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Pause between two logins of one thread: the load is steady rather than as fast as possible,
/// so the final check (every login on every node) stays short.
const LOGIN_PAUSE: Duration = Duration::from_millis(5);

/// How many examples of each kind of failed attempt a thread keeps.
const EXAMPLES_MAX: usize = 5;

/// An acknowledged login.
#[derive(Debug, Clone)]
pub struct Ack {
    pub request_id: String,
    pub identities: Identities,
    pub mpid: String,
    /// The `Idgraph-Seq` of the answer: the answering node had applied this sequence.
    pub seq: u64,
    /// When the attempt that was acknowledged was sent, and when its answer came.
    pub sent_at: Instant,
    pub acked_at: Instant,
    /// When the login was first sent.
    pub first_sent_at: Instant,
}

/// What one thread met besides acknowledgements.
#[derive(Debug, Default)]
pub struct Tally {
    pub attempts: u64,
    pub no_answer: u64,
    pub no_answer_examples: Vec<String>,
    pub unavailable_503: u64,
    /// Other 5xx answers (retried too), a few examples.
    pub other_5xx: u64,
    pub other_5xx_examples: Vec<String>,
    /// 4xx (and other non-200) answers to a login: refusals, never expected here.
    pub refused: Vec<String>,
    /// Logins given up, unacknowledged, when the load stopped.
    pub abandoned: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.no_answer += other.no_answer;
        self.no_answer_examples.extend(other.no_answer_examples);
        self.unavailable_503 += other.unavailable_503;
        self.other_5xx += other.other_5xx;
        self.other_5xx_examples.extend(other.other_5xx_examples);
        self.refused.extend(other.refused);
        self.abandoned += other.abandoned;
    }
}

/// What the test and the load threads share to steer the load.
#[derive(Debug, Default)]
struct Control {
    /// Set once: the threads give up their logins in flight and end.
    stop: AtomicBool,
    /// While set, no thread starts a new login (the ones in flight go on until acknowledged).
    paused: AtomicBool,
    /// Threads within a login. A thread counts itself in before it looks at `paused`, and the
    /// test sets `paused` before it waits for this to be 0 (both `SeqCst`), so once the test saw
    /// 0 no login is in flight until it resumes.
    busy: AtomicUsize,
}

/// The running load.
#[derive(Debug)]
pub struct Load {
    control: Arc<Control>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// Starts `n_threads` threads sending logins to the nodes at `bases` (their HTTP roots).
    pub fn start(n_threads: usize, bases: Vec<String>) -> Load {
        let control = Arc::new(Control::default());
        let acks = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n_threads)
            .map(|thread_idx| {
                let (control, acks) = (Arc::clone(&control), Arc::clone(&acks));
                let bases = bases.clone();
                std::thread::spawn(move || run(thread_idx, &bases, &control, &acks))
            })
            .collect();
        Load { control, acks, threads }
    }

    /// Lets the logins in flight finish (at most `timeout`) and starts no new ones until
    /// [`Load::resume`]: the cluster is then quiet, and every node must reach the same state.
    pub fn pause(&self, timeout: Duration) {
        self.control.paused.store(true, Ordering::SeqCst);
        let started = Instant::now();
        while self.control.busy.load(Ordering::SeqCst) > 0 {
            assert!(
                started.elapsed() < timeout,
                "logins still unacknowledged {timeout:?} after the load paused"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn resume(&self) {
        self.control.paused.store(false, Ordering::SeqCst);
    }

    /// The acknowledged logins so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// How long after `since` the first login sent (on the attempt that was acknowledged) at or
    /// after `since` was acknowledged, if one was.
    pub fn first_ack_after(&self, since: Instant) -> Option<Duration> {
        let acks = self.acks.lock().unwrap();
        let first = acks.iter().filter(|ack| ack.sent_at >= since).map(|ack| ack.acked_at).min();
        first.map(|acked_at| acked_at - since)
    }

    /// Stops the threads; every acknowledged login and the tally of the rest.
    pub fn stop(self) -> (Vec<Ack>, Tally) {
        self.control.stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for thread in self.threads {
            tally.add(thread.join().unwrap());
        }
        let acks = self.acks.lock().unwrap().clone();
        (acks, tally)
    }
}

fn run(thread_idx: usize, bases: &[String], control: &Control, acks: &Mutex<Vec<Ack>>) -> Tally {
    let client = client(LOGIN_TIMEOUT);
    let mut tally = Tally::default();
    let mut login_idx = 0;
    while !control.stop.load(Ordering::SeqCst) {
        control.busy.fetch_add(1, Ordering::SeqCst);
        if control.paused.load(Ordering::SeqCst) {
            control.busy.fetch_sub(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        login(&client, bases, thread_idx, login_idx, &control.stop, acks, &mut tally);
        control.busy.fetch_sub(1, Ordering::SeqCst);
        login_idx += 1;
        std::thread::sleep(LOGIN_PAUSE);
    }
    tally
}

/// One login, sent until acknowledged, refused, or the load stops.
fn login(
    client: &Client,
    bases: &[String],
    thread_idx: usize,
    login_idx: usize,
    stop: &AtomicBool,
    acks: &Mutex<Vec<Ack>>,
    tally: &mut Tally,
) {
    let request_id = format!("t{thread_idx}-{login_idx}");
    let identities = Identities {
        customerid: format!("c-{thread_idx}-{login_idx}"),
        email: format!("u{thread_idx}.{login_idx}@example.com"),
    };
    let first_sent_at = Instant::now();
    let mut node_idx = (thread_idx + login_idx) % bases.len();
    loop {
        if stop.load(Ordering::SeqCst) {
            tally.abandoned += 1;
            break;
        }
        tally.attempts += 1;
        let sent_at = Instant::now();
        match node::login(client, &bases[node_idx], &request_id, &identities) {
            Answer::Mpid { mpid, seq } => {
                let acked_at = Instant::now();
                let ack =
                    Ack { request_id, identities, mpid, seq, sent_at, acked_at, first_sent_at };
                acks.lock().unwrap().push(ack);
                break;
            }
            Answer::Unanswered { error } => {
                tally.no_answer += 1;
                if tally.no_answer_examples.len() < EXAMPLES_MAX {
                    tally
                        .no_answer_examples
                        .push(format!("{request_id} at {}: {error}", bases[node_idx]));
                }
            }
            Answer::Status { status: 503, .. } => tally.unavailable_503 += 1,
            Answer::Status { status, body } if status >= 500 => {
                tally.other_5xx += 1;
                if tally.other_5xx_examples.len() < EXAMPLES_MAX {
                    tally
                        .other_5xx_examples
                        .push(format!("{request_id} at {}: {status} {body}", bases[node_idx]));
                }
            }
            refused => {
                tally.refused.push(format!("{request_id} at {}: {refused:?}", bases[node_idx]));
                break;
            }
        }
        node_idx = (node_idx + 1) % bases.len();
        std::thread::sleep(RETRY_PAUSE);
    }
}
