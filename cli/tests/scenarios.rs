//! The reference workflows under `workflows/<name>/`: each validates, and every sample input runs
//! offline as its `scenarios.yaml` says (exit code, answers given through `baton approve` and
//! `baton reject`, final status, output), all in one fresh state directory with no network, no
//! environment variables and no secrets set.

mod support;

use support::scenarios::{Baton, all, play};
use support::text;

#[test]
fn every_sample_input_of_every_reference_workflow_runs_offline() {
    let cases = all();
    let workflows: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.workflow.as_str()).collect();
    for name in [
        "order-tracking",
        "invoice-3way-match",
        "kyc-aml-review",
        "employee-onboarding",
        "lead-qualification",
        "incident-resolution",
        "api-fallback",
    ] {
        assert!(workflows.contains(name), "workflows/{name}/scenarios.yaml is missing");
    }
    let state = tempfile::tempdir().expect("tempdir");
    let b = Baton { state: state.path(), global: vec![], env: vec![] };
    for w in &workflows {
        let file = format!("workflows/{w}/workflow.yaml");
        let out = b.exec(&["validate", &file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out));
    }
    for case in &cases {
        let played = play(&b, case, Some(&case.mocks));
        let verify = b.exec(&["audit", "verify", &played.run_id]);
        assert_eq!(verify.status.code(), Some(0), "{}: audit verify: {}", case.name(), text(&verify));
    }
}
