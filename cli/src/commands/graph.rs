//! `baton graph FILE`: the DAG as Mermaid or Graphviz.

use std::path::Path;

use anyhow::Result;

use crate::definition::load_plan;
use crate::{GraphFormat, exit};

/// Prints the workflow's graph.
pub fn graph(file: &Path, format: GraphFormat) -> Result<u8> {
    let (plan, _) = load_plan(file)?;
    let text = match format {
        GraphFormat::Mermaid => baton_core::graph::to_mermaid(&plan),
        GraphFormat::Dot => baton_core::graph::to_dot(&plan),
    };
    print!("{text}");
    Ok(exit::OK)
}
