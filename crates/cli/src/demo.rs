//! `idgraph demo`: the signup flow of the IDSync guide ("Identify Users"), step by step, through the
//! real engine on a RocksDB data folder: an anonymous visitor, browsing, then a signup that turns the
//! same MPID into a known profile (Profile Conversion).

use std::path::Path;

use anyhow::Context;
use idgraph_engine::{Command, Engine, EngineConfig, RequestMeta, Workspace};
use idgraph_model::{Environment, Identity, IdentityType};
use idgraph_query::{Answer, IdentityOp, IdentityQuery, ResolverConfig, Strategy};

pub(crate) fn run(data_dir: &Path) -> anyhow::Result<()> {
    // The guide's priority: customer ID, email, username (here `other`), phone number; then the
    // device ID the SDK sends on every request.
    let priority = vec![
        IdentityType::CustomerId,
        IdentityType::Email,
        IdentityType::Other,
        IdentityType::MobileNumber,
        IdentityType::DeviceApplicationStamp,
    ];
    let login = [IdentityType::CustomerId, IdentityType::Email, IdentityType::Other];
    let resolver = ResolverConfig::new(Strategy::ProfileConversion, priority, &login, &login, &[])?;
    let workspace = Workspace { name: "demo".into(), scope: "demo".into(), resolver };
    let (engine, report) = Engine::open(data_dir, EngineConfig::single(workspace))
        .with_context(|| format!("cannot open {}", data_dir.display()))?;
    outln!(
        "opened {} (log at sequence {}, {} entries replayed)",
        data_dir.display(),
        engine.log().last_seq(),
        report.n_replayed
    );

    // A fresh device each run, so every run shows the whole flow.
    let device = Identity::new(
        IdentityType::DeviceApplicationStamp,
        format!("das-{}", engine.log().last_seq().0 + 1),
    );
    let email = Identity::new(
        IdentityType::Email,
        format!("shopper{}@example.com", engine.log().last_seq().0 + 1),
    );
    let steps: [(&str, IdentityOp, Vec<Identity>); 4] = [
        (
            "1-3. a new user opens the app: anonymous profile",
            IdentityOp::Identify,
            vec![device.clone()],
        ),
        (
            "     browsing: the same device resolves to the same profile",
            IdentityOp::Identify,
            vec![device.clone()],
        ),
        (
            "4-5. signup with a login ID: the same MPID becomes known",
            IdentityOp::Login,
            vec![device.clone(), email.clone()],
        ),
        ("     later, the login ID alone finds the known profile", IdentityOp::Search, vec![email]),
    ];
    let mut previous_mpid = None;
    for (title, op, known_identities) in steps {
        let meta = RequestMeta {
            workspace: "demo".into(),
            environment: Environment::Development,
            request_id: None,
        };
        let query = IdentityQuery { op, known_identities: known_identities.clone(), previous_mpid };
        let answer = engine.handle(&meta, Command::Identity(query))?;
        let shown: Vec<String> = known_identities.iter().map(Identity::to_string).collect();
        match answer {
            Answer::Resolved(answer) => {
                outln!(
                    "{title}\n     {} {{{}}} -> mpid {}{}, logged in: {}",
                    op.name(),
                    shown.join(", "),
                    answer.mpid,
                    if answer.created { " (new)" } else { "" },
                    answer.is_logged_in
                );
                previous_mpid = Some(answer.mpid);
            }
            other => outln!("{title}\n     {} {{{}}} -> {other:?}", op.name(), shown.join(", ")),
        }
    }
    let last = engine.log().last_seq();
    engine.close()?;
    outln!(
        "log now at sequence {last}; inspect it with `idgraph log show --data-dir {}`",
        data_dir.display()
    );
    Ok(())
}
