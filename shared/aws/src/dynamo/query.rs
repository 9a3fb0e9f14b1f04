//! Run queries on DynamoDB: a seek in the runs index rather than a read of every header.

use baton_runtime::StoreError;
use baton_runtime::ports::{RunHeader, RunQuery};

use super::{DynamoStore, sdk};
use crate::items::*;

impl DynamoStore {
    /// Run headers that match `query`, newest first, read from the runs index.
    pub(super) async fn query_runs_indexed(&self, query: &RunQuery) -> Result<Vec<RunHeader>, StoreError> {
        // Seek in the runs index instead of reading every header: the time bounds and the page
        // cursor become a key condition on GSI1SK (`<created_at, 15 digits>#<id>`), status and
        // workflow a filter, and reading stops once the page is full. BETWEEN is inclusive, so
        // the bounds' own keys are dropped by `matches` (the cursor's run, the exact instants).
        let upper = match (&query.after, query.created_before) {
            (Some((at, id)), Some(t)) => Some(std::cmp::min(format!("{at:015}#{id}"), format!("{t:015}#"))),
            (Some((at, id)), None) => Some(format!("{at:015}#{id}")),
            (None, Some(t)) => Some(format!("{t:015}#")),
            (None, None) => None,
        };
        let lower = query.created_after.map(|t| format!("{:015}#", t.saturating_add(1)));
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(RUNS_INDEX)
            .expression_attribute_names("#pk", "GSI1PK")
            .expression_attribute_values(":pk", s("RUNS"))
            .scan_index_forward(false);
        if upper.is_some() || lower.is_some() {
            q = q
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#sk", "GSI1SK")
                .expression_attribute_values(":lo", s(lower.unwrap_or_else(|| "0".into())))
                .expression_attribute_values(":hi", s(upper.unwrap_or_else(|| "9".repeat(15) + "#~")));
        } else {
            q = q.key_condition_expression("#pk = :pk");
        }
        let mut filters = Vec::new();
        if let Some(status) = query.status {
            filters.push("#status = :status");
            q = q
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()));
        }
        if let Some(workflow) = &query.workflow {
            filters.push("#workflow = :workflow");
            q = q
                .expression_attribute_names("#workflow", "workflow")
                .expression_attribute_values(":workflow", s(workflow));
        }
        if !filters.is_empty() {
            q = q.filter_expression(filters.join(" AND "));
        }
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page =
                q.clone().set_exclusive_start_key(start).send().await.map_err(|e| sdk(&self.table, "Query", e))?;
            for item in page.items() {
                let h = Self::header_of(item)?;
                if query.matches(&h) {
                    out.push(h);
                    if out.len() >= query.limit {
                        return Ok(out);
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}
