//! Random workflows for the simulation, from the seed: DAGs of `http` and `transform` steps
//! with fan-out and fan-in, conditions, `for_each`, loops, human tasks, event waits, sleeps and
//! sub-workflows. Their `output` keeps only what does not depend on time (a sleep's wake-up
//! time, a task's answer time), so a history with faults must end with the fault-free output.

use baton_runtime::entropy::SeededEntropy;

/// One generated workflow.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Its name.
    pub name: String,
    /// Its YAML.
    pub source: String,
}

/// The retry policy of every call: enough attempts to outlast the faults a history injects.
/// `timeout` is not in it, and calls get two hours: a call lost for good would end its run
/// failed instead of being hidden by a retry after its limit.
const RETRY: &str = "{max_attempts: 10, initial: 1s, max: 8s, on: [http_5xx, connect, child_failed, dead_lettered]}";

/// A root workflow and the children it calls (children first: they are published first).
pub fn generate(rng: &SeededEntropy, index: usize) -> Vec<Generated> {
    let mut out = Vec::new();
    let child = if rng.chance(400) {
        let name = format!("sim-child-{index}");
        out.push(Generated { name: name.clone(), source: workflow(rng, &name, 3, None) });
        Some(name)
    } else {
        None
    };
    let name = format!("sim-{index}");
    out.push(Generated { name: name.clone(), source: workflow(rng, &name, 7, child.as_deref()) });
    out
}

fn workflow(rng: &SeededEntropy, name: &str, max_steps: u64, child: Option<&str>) -> String {
    let count = 2 + rng.below(max_steps.saturating_sub(1));
    let mut steps: Vec<String> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let (mut waited, mut looped, mut asked, mut called) = (false, false, false, child.is_none());
    for i in 0..count {
        let id = format!("s{i}");
        let needs: Vec<String> = if ids.is_empty() {
            Vec::new()
        } else {
            let n = rng.below(3).min(ids.len() as u64);
            let mut picked: Vec<String> = (0..n).map(|_| ids[rng.below(ids.len() as u64) as usize].clone()).collect();
            picked.sort();
            picked.dedup();
            picked
        };
        let needs_yaml = if needs.is_empty() { String::new() } else { format!("    needs: [{}]\n", needs.join(", ")) };
        let when = if rng.chance(120) { "    when: '.input.n > 2'\n" } else { "" };
        let roll = rng.below(100);
        let (body, output) = if !called && roll < 25 {
            called = true;
            let child = child.unwrap_or_default();
            (
                format!(
                    "    tool: workflow\n    retry: {RETRY}\n    with: {{name: {child}, input: {{key: '{{{{ .input.key }}}}', n: 1, items: [1, 2]}}}}\n"
                ),
                Some(format!(".steps.{id}.output")),
            )
        } else if !asked && roll < 35 {
            asked = true;
            (
                "    tool: human\n    with: {queue: ops, prompt: 'go on?', summary: false}\n".to_owned(),
                Some(format!(".steps.{id}.output.decision")),
            )
        } else if !waited && roll < 45 {
            waited = true;
            (
                "    tool: wait_event\n    with:\n      pattern: {source: [sim.events], detail-type: [Go]}\n      correlate: {event: .detail.key, run: .input.key}\n".to_owned(),
                Some(format!(".steps.{id}.output.detail")),
            )
        } else if roll < 52 {
            ("    tool: sleep\n    with: {for: 20s}\n".to_owned(), None)
        } else if roll < 62 {
            (
                format!(
                    "    for_each: .input.items\n    max_concurrency: {}\n    tool: http\n    timeout: 2h\n    retry: {RETRY}\n    with: {{method: POST, url: 'https://api.sim/{id}', body: {{item: '{{{{ .item }}}}', key: '{{{{ .input.key }}}}'}}}}\n",
                    1 + rng.below(3)
                ),
                Some(format!(".steps.{id}.output")),
            )
        } else if !looped && roll < 70 {
            looped = true;
            (
                format!(
                    "    loop:\n      max_iterations: {}\n      then: continue\n      steps:\n        - id: {id}_call\n          tool: http\n          timeout: 2h\n          retry: {RETRY}\n          with: {{method: POST, url: 'https://api.sim/{id}', body: {{iteration: '{{{{ .iteration }}}}'}}}}\n        - id: {id}_check\n          needs: [{id}_call]\n          tool: transform\n          with: {{expr: '.steps.{id}_call.output.body.n + 1'}}\n",
                    2 + rng.below(2)
                ),
                Some(format!(".steps.{id}.output")),
            )
        } else if roll < 80 {
            let from = needs.first().map_or(".input.key".to_owned(), |n| format!("(.steps.{n}.output | tostring)"));
            (
                format!("    tool: transform\n    with: {{expr: '{from} | length'}}\n"),
                Some(format!(".steps.{id}.output")),
            )
        } else {
            let from =
                needs.first().map_or("none".to_owned(), |n| format!("{{{{ .steps.{n}.output | tostring | length }}}}"));
            (
                format!(
                    "    tool: http\n    timeout: 2h\n    retry: {RETRY}\n    with: {{method: POST, url: 'https://api.sim/{id}', body: {{key: '{{{{ .input.key }}}}', from: '{from}'}}}}\n"
                ),
                Some(format!(".steps.{id}.output.body")),
            )
        };
        steps.push(format!("  - id: {id}\n{needs_yaml}{when}{body}"));
        if let Some(o) = output {
            kept.push(format!("{id}: {o}"));
        }
        ids.push(id);
    }
    let output = if kept.is_empty() { "'{}'".to_owned() } else { format!("'{{{}}}'", kept.join(", ")) };
    format!(
        "name: {name}\ninput_schema: {{type: object, required: [key, n, items]}}\noutput: {output}\nsteps:\n{}",
        steps.join("")
    )
}
