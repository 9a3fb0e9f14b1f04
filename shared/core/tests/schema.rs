//! The JSON Schema in `schema/workflow.schema.json` is what editors complete against; it must be
//! exactly the schema generated from the Rust model. Regenerate with `BATON_UPDATE_SCHEMA=1`.

use std::path::PathBuf;

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema/workflow.schema.json")
}

#[test]
fn committed_schema_matches_the_rust_model() {
    let generated =
        serde_json::to_string_pretty(&baton_core::model::language_schema()).expect("schema serialises") + "\n";
    let path = schema_path();
    if std::env::var_os("BATON_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).expect("schema/workflow.schema.json exists");
    assert_eq!(
        committed, generated,
        "schema/workflow.schema.json is out of date with shared/core/src/model.rs: run `BATON_UPDATE_SCHEMA=1 cargo test -p baton-core --test schema`"
    );
}

#[test]
fn every_step_field_of_the_model_is_in_the_schema() {
    let schema = baton_core::model::language_schema();
    let step = &schema["$defs"]["Step"]["properties"];
    for field in "id tool with needs when retry timeout fallback for_each max_concurrency loop escalate".split(' ') {
        assert!(step.get(field).is_some(), "step field `{field}` missing from the schema");
    }
    let top = &schema["properties"];
    for field in ["name", "version", "description", "input_schema", "output", "triggers", "steps", "compensate"] {
        assert!(top.get(field).is_some(), "top-level field `{field}` missing from the schema");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false), "unknown top-level fields must be rejected");
}
