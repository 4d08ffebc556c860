//! IDSync conformance: every scenario in `tests/conformance/*.idsync` (format in its README), run
//! against a fresh in-memory engine and against a RocksDB-backed engine reopened before every line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use idgraph::engine::{Command, Engine, EngineError, ManualClock, RequestMeta};
use idgraph::log::Log;
use idgraph::model::{Environment, Identity, IdentityChange, IdentityType, Mpid, Seq, Timestamp};
use idgraph::query::{
    AliasQuery, Answer, DEFAULT_PRIORITY, IdentityOp, IdentityQuery, ResolverConfig, Strategy,
    TieBreak,
};
use idgraph_test_support::{CountingMpids, START, WORKSPACE, engine_config};

struct Scenario {
    name: String,
    file: PathBuf,
    /// (line number, text) after the `config` line.
    lines: Vec<(usize, String)>,
    config: ResolverConfig,
}

fn types(list: &str, at: &str) -> Vec<IdentityType> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|name| name.parse().unwrap_or_else(|err| panic!("{at}: {err}")))
        .collect()
}

fn parse_config(line: &str, at: &str) -> ResolverConfig {
    let mut fields = BTreeMap::new();
    for token in line.split_whitespace().skip(1) {
        let (key, value) =
            token.split_once('=').unwrap_or_else(|| panic!("{at}: `{token}` is not key=value"));
        fields.insert(key, value);
    }
    let strategy =
        Strategy::from_name(fields.get("strategy").unwrap_or_else(|| panic!("{at}: no strategy")))
            .unwrap_or_else(|| panic!("{at}: unknown strategy"));
    let priority = match fields.get("priority").copied() {
        None | Some("default") => DEFAULT_PRIORITY.to_vec(),
        Some(list) => types(list, at),
    };
    let get = |key: &str| types(fields.get(key).copied().unwrap_or(""), at);
    let mut config =
        ResolverConfig::new(strategy, priority, &get("login"), &get("unique"), &get("immutable"))
            .unwrap_or_else(|err| panic!("{at}: {err}"));
    if let Some(tie_break) = fields.get("tie_break") {
        config.tie_break =
            TieBreak::from_name(tie_break).unwrap_or_else(|| panic!("{at}: tie_break"));
    }
    if let Some(auto_alias) = fields.get("auto_alias") {
        config.auto_alias = *auto_alias == "true";
    }
    config.validate().unwrap_or_else(|err| panic!("{at}: {err}"));
    config
}

fn parse_file(path: &Path) -> Vec<Scenario> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut pending_name: Option<String> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        let at = format!("{}:{line_no}", path.display());
        if line.is_empty() || line.starts_with("source") {
            continue;
        }
        if let Some(name) = line.strip_prefix("scenario ") {
            pending_name = Some(name.trim().to_owned());
        } else if line.starts_with("config ") {
            let name =
                pending_name.take().unwrap_or_else(|| panic!("{at}: config without scenario"));
            scenarios.push(Scenario {
                name,
                file: path.to_owned(),
                lines: Vec::new(),
                config: parse_config(line, &at),
            });
        } else {
            let scenario =
                scenarios.last_mut().unwrap_or_else(|| panic!("{at}: line outside a scenario"));
            scenario.lines.push((line_no, line.to_owned()));
        }
    }
    scenarios
}

/// Where a scenario runs: in memory, or on disk with a reopen before every line.
enum Backend {
    Memory(Engine),
    Disk { dir: tempfile::TempDir, engine: Option<Engine> },
}

struct Run {
    backend: Backend,
    config: ResolverConfig,
    clock: Arc<ManualClock>,
    names: BTreeMap<String, Mpid>,
    seen: BTreeSet<Mpid>,
}

impl Run {
    fn new(config: &ResolverConfig, on_disk: bool) -> Run {
        let clock = Arc::new(ManualClock::new(START, 0));
        let backend = if on_disk {
            Backend::Disk { dir: tempfile::tempdir().unwrap(), engine: None }
        } else {
            Backend::Memory(Engine::in_memory(
                engine_config(config.clone()),
                Box::new(Arc::clone(&clock)),
                Box::new(CountingMpids::after(1000)),
            ))
        };
        Run {
            backend,
            config: config.clone(),
            clock,
            names: BTreeMap::new(),
            seen: BTreeSet::new(),
        }
    }

    /// The engine; on disk, a freshly reopened one.
    fn engine(&mut self) -> &Engine {
        match &mut self.backend {
            Backend::Memory(engine) => engine,
            Backend::Disk { dir, engine } => {
                if let Some(previous) = engine.take() {
                    previous.close().unwrap();
                }
                let log = Log::open(dir.path().join("log")).unwrap();
                let (reopened, _) = Engine::with_log(
                    log,
                    engine_config(self.config.clone()),
                    Box::new(Arc::clone(&self.clock)),
                    Box::new(CountingMpids::after(1000)),
                )
                .unwrap();
                engine.insert(reopened)
            }
        }
    }

    fn mpid(&self, name: &str, at: &str) -> Mpid {
        *self.names.get(name).unwrap_or_else(|| panic!("{at}: `{name}` is not bound"))
    }

    fn line(&mut self, line: &str, at: &str) {
        self.clock.advance(1_000);
        let (request, expectation) = match line.split_once("->") {
            Some((request, expectation)) => (request.trim(), Some(expectation.trim())),
            None => (line, None),
        };
        let mut tokens = request.split_whitespace();
        let op = tokens.next().unwrap();
        let rest: Vec<&str> = tokens.collect();
        match op {
            "identify" | "login" | "logout" | "search" => self.identity(
                op,
                &rest,
                expectation.unwrap_or_else(|| panic!("{at}: no expectation")),
                at,
            ),
            "modify" => self.modify(
                &rest,
                expectation.unwrap_or_else(|| panic!("{at}: no expectation")),
                at,
            ),
            "alias" => {
                self.alias(&rest, expectation.unwrap_or_else(|| panic!("{at}: no expectation")), at)
            }
            "expect" => self.expect(&rest, at),
            other => panic!("{at}: unknown line kind `{other}`"),
        }
    }

    fn identity(&mut self, op: &str, args: &[&str], expectation: &str, at: &str) {
        let op = match op {
            "identify" => IdentityOp::Identify,
            "login" => IdentityOp::Login,
            "logout" => IdentityOp::Logout,
            _ => IdentityOp::Search,
        };
        let mut environment = Environment::Production;
        let mut previous_mpid = None;
        let mut known_identities = Vec::new();
        for arg in args {
            let (key, value) = arg.split_once('=').unwrap_or_else(|| panic!("{at}: `{arg}`"));
            match key {
                "env" => {
                    environment =
                        Environment::from_wire_name(value).unwrap_or_else(|| panic!("{at}: env"))
                }
                "previous" => previous_mpid = Some(self.mpid(value, at)),
                _ => known_identities.push(Identity::new(
                    key.parse().unwrap_or_else(|err| panic!("{at}: {err}")),
                    value,
                )),
            }
        }
        let n_profiles_before = self.engine().with_projection(|p| p.n_profiles());
        let meta = RequestMeta { workspace: WORKSPACE.into(), environment, request_id: None };
        let res = self.engine().handle(
            &meta,
            Command::Identity(IdentityQuery { op, known_identities, previous_mpid }),
        );
        let mut words = expectation.split_whitespace();
        match words.next() {
            Some("not_found") => {
                assert_eq!(res, Ok(Answer::NotFound), "{at}");
                assert_eq!(
                    self.engine().with_projection(|p| p.n_profiles()),
                    n_profiles_before,
                    "{at}: search created a profile"
                );
            }
            Some("error") => check_error(&res.map(|_| ()), expectation, at),
            Some(first) => {
                let Ok(Answer::Resolved(answer)) = res else {
                    panic!("{at}: expected a profile, got {res:?}")
                };
                let name = if first == "new" {
                    let name = words.next().unwrap_or_else(|| panic!("{at}: `new` needs a name"));
                    assert!(
                        answer.created && !self.seen.contains(&answer.mpid),
                        "{at}: expected a new MPID for {name}, got {} ({:?})",
                        answer.mpid,
                        self.name_of(answer.mpid)
                    );
                    self.names.insert(name.to_owned(), answer.mpid);
                    name
                } else {
                    let expected = self.mpid(first, at);
                    assert_eq!(
                        answer.mpid,
                        expected,
                        "{at}: expected {first}, got {:?}",
                        self.name_of(answer.mpid)
                    );
                    assert!(!answer.created, "{at}");
                    first
                };
                self.seen.insert(answer.mpid);
                for word in words {
                    match word {
                        "logged_in" => {
                            assert!(answer.is_logged_in, "{at}: {name} should be logged in")
                        }
                        "logged_out" => {
                            assert!(!answer.is_logged_in, "{at}: {name} should be logged out")
                        }
                        _ if word.starts_with("matched=") => {
                            let expected: BTreeSet<IdentityType> =
                                types(&word["matched=".len()..], at).into_iter().collect();
                            let actual: BTreeSet<IdentityType> =
                                answer.matched_identities.iter().map(|i| i.identity_type).collect();
                            assert_eq!(actual, expected, "{at}: matched_identities");
                        }
                        other => panic!("{at}: unknown expectation `{other}`"),
                    }
                }
            }
            None => panic!("{at}: empty expectation"),
        }
    }

    /// Every recorded identity request, re-decided and explained against the state just before
    /// it, must agree with what the engine recorded.
    fn check_explanations(&mut self, scenario: &str) {
        let engine = self.engine();
        engine.log().flush().unwrap();
        let audit = engine.audit(WORKSPACE).unwrap();
        let last = engine.log().last_seq();
        for seq in 1..=last.0 {
            match audit.explain_entry(Seq(seq)) {
                Ok(explained) => assert!(
                    explained.agrees,
                    "[{scenario}] the explanation of entry {seq} disagrees with the log:\n{}",
                    explained.explanation
                ),
                // Not an identity request: nothing to explain.
                Err(EngineError::Invalid(_)) => {}
                Err(err) => panic!("[{scenario}] explaining entry {seq}: {err}"),
            }
        }
    }

    fn name_of(&self, mpid: Mpid) -> Option<&str> {
        self.names.iter().find(|(_, m)| **m == mpid).map(|(name, _)| name.as_str())
    }

    fn modify(&mut self, args: &[&str], expectation: &str, at: &str) {
        let mpid = self.mpid(args[0], at);
        let identity_changes = args[1..]
            .iter()
            .map(|change| {
                let (identity_type, values) =
                    change.split_once(':').unwrap_or_else(|| panic!("{at}: `{change}`"));
                let (old, new) =
                    values.split_once('>').unwrap_or_else(|| panic!("{at}: `{change}` needs >"));
                let value = |v: &str| (!v.is_empty()).then(|| v.to_owned());
                IdentityChange {
                    identity_type: identity_type.parse().unwrap(),
                    old_value: value(old),
                    new_value: value(new),
                }
            })
            .collect();
        let meta = RequestMeta {
            workspace: WORKSPACE.into(),
            environment: Environment::Production,
            request_id: None,
        };
        let res = self.engine().handle(&meta, Command::Modify { mpid, identity_changes });
        if expectation.starts_with("error") {
            return check_error(&res.map(|_| ()), expectation, at);
        }
        let Ok(Answer::Modified { change_results, .. }) = res else {
            panic!("{at}: expected ok, got {res:?}")
        };
        let actual: BTreeSet<(IdentityType, Mpid)> =
            change_results.iter().map(|c| (c.identity_type, c.modified_mpid)).collect();
        let mut words = expectation.split_whitespace();
        assert_eq!(words.next(), Some("ok"), "{at}");
        let expected: BTreeSet<(IdentityType, Mpid)> = match words.next() {
            Some(changed) => changed
                .trim_start_matches("changed=")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|pair| {
                    let (t, name) =
                        pair.split_once(':').unwrap_or_else(|| panic!("{at}: `{pair}`"));
                    (t.parse().unwrap(), self.mpid(name, at))
                })
                .collect(),
            None => actual.clone(),
        };
        assert_eq!(actual, expected, "{at}: change_results");
    }

    fn alias(&mut self, args: &[&str], expectation: &str, at: &str) {
        let (source, destination) = (self.mpid(args[0], at), self.mpid(args[1], at));
        let mut query = AliasQuery { source, destination, start: None, end: None };
        for arg in &args[2..] {
            let (key, value) = arg.split_once('=').unwrap_or_else(|| panic!("{at}: `{arg}`"));
            let ms: i64 = value.parse().unwrap_or_else(|_| panic!("{at}: `{arg}`"));
            match key {
                "start" => query.start = Some(Timestamp::from_unix_millis(ms)),
                "end" => query.end = Some(Timestamp::from_unix_millis(ms)),
                _ => panic!("{at}: `{arg}`"),
            }
        }
        let meta = RequestMeta {
            workspace: WORKSPACE.into(),
            environment: Environment::Production,
            request_id: None,
        };
        let res = self.engine().handle(&meta, Command::Alias(query));
        match expectation.split_whitespace().next() {
            Some("accepted") => {
                assert!(matches!(res, Ok(Answer::Alias { accepted: true, .. })), "{at}: {res:?}")
            }
            Some("ignored") => {
                assert!(matches!(res, Ok(Answer::Alias { accepted: false, .. })), "{at}: {res:?}")
            }
            _ => check_error(&res.map(|_| ()), expectation, at),
        }
    }

    fn expect(&mut self, args: &[&str], at: &str) {
        let mpid = self.mpid(args[0], at);
        let login_ids = self.config.login_ids;
        let (identities, orphaned, known) = self.engine().with_projection(|p| {
            let profile = p.profile_id(mpid).unwrap_or_else(|| panic!("{at}: no profile"));
            let view = p.profile(profile);
            (
                p.identities_of_sorted(profile),
                view.is_orphaned(),
                login_ids.iter().any(|t| view.types.contains(t)),
            )
        });
        match args.get(1).copied() {
            Some("=") => {
                let expected: BTreeSet<Identity> = args[2..]
                    .iter()
                    .map(|pair| {
                        let (t, v) =
                            pair.split_once('=').unwrap_or_else(|| panic!("{at}: `{pair}`"));
                        Identity::new(t.parse().unwrap(), v)
                    })
                    .collect();
                let actual: BTreeSet<Identity> = identities.into_iter().collect();
                assert_eq!(actual, expected, "{at}: identities of {}", args[0]);
            }
            Some("orphaned") => assert!(orphaned, "{at}: {} holds {identities:?}", args[0]),
            Some("known") => assert!(known, "{at}: {} is anonymous", args[0]),
            Some("anonymous") => assert!(!known, "{at}: {} is known", args[0]),
            other => panic!("{at}: unknown expect {other:?}"),
        }
    }
}

fn check_error(res: &Result<(), EngineError>, expectation: &str, at: &str) {
    let rest = expectation.trim_start_matches("error").trim();
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let text = text.trim().trim_matches('"');
    match res {
        Err(EngineError::Request(err)) => {
            assert_eq!(err.code.as_str(), code, "{at}: {err}");
            assert!(err.message.contains(text), "{at}: message `{}` lacks `{text}`", err.message);
        }
        other => panic!("{at}: expected error {code}, got {other:?}"),
    }
}

fn run_all(on_disk: bool) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idsync"))
        .collect();
    files.sort();
    let mut n_scenarios = 0;
    let mut failures = Vec::new();
    for file in files {
        for scenario in parse_file(&file) {
            n_scenarios += 1;
            let res = std::panic::catch_unwind(|| {
                let mut run = Run::new(&scenario.config, on_disk);
                for (line_no, line) in &scenario.lines {
                    let at = format!("{}:{line_no} [{}]", scenario.file.display(), scenario.name);
                    run.line(line, &at);
                }
                run.check_explanations(&scenario.name);
            });
            if let Err(panic) = res {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(message);
            }
        }
    }
    assert!(n_scenarios >= 45, "only {n_scenarios} scenarios found");
    assert!(
        failures.is_empty(),
        "{} of {n_scenarios} scenarios failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn conformance_in_memory() {
    run_all(false);
}

#[test]
fn conformance_on_rocksdb_reopened_before_every_line() {
    run_all(true);
}
