//! The workflow shapes both benchmarks measure (the core engine bench and the embedded end-to-end
//! bench include this file), so their figures describe the same definitions.

/// `n` no-op `transform` steps, each needing the one before; the output is the last step's.
pub fn chain(n: usize) -> String {
    let mut y = format!("name: chain{n}\noutput: .steps.s{n}.output\nsteps:\n");
    for i in 1..=n {
        y.push_str(&format!("  - id: s{i}\n    tool: transform\n    with: {{expr: \"{{n: {i}}}\"}}\n"));
        if i > 1 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    y
}

/// `n` independent no-op `transform` steps; the output sums what they returned.
pub fn fanout(n: usize) -> String {
    let mut y = format!("name: fanout{n}\noutput: \"{{n: ([.steps[].output.n] | add)}}\"\nsteps:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: b{i}\n    tool: transform\n    with: {{expr: \"{{n: {i}}}\"}}\n"));
    }
    y
}
