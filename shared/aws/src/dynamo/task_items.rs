//! Task items: one write per task per transition, open tasks listed in gsi2 and open event
//! waits in gsi1 under their pattern's source and detail type.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use baton_core::ids::TaskId;
use baton_runtime::StoreError;
use baton_runtime::ports::{TaskChange, TaskRecord};

use super::{DynamoStore, backend};
use crate::items::*;

/// One change per task: a task opened in this transition is written once with its final queue
/// and outcome; later changes to an existing task keep their order (reassign, then close).
pub(super) fn fold_task_changes(changes: &[TaskChange]) -> Vec<TaskChange> {
    let mut out: Vec<TaskChange> = Vec::new();
    for c in changes {
        let id = match c {
            TaskChange::Open(t) => t.id.as_str(),
            TaskChange::Reassign { id, .. } | TaskChange::Close { id, .. } => id.as_str(),
        };
        let opened = out.iter_mut().find(|o| matches!(o, TaskChange::Open(t) if t.id == id));
        match (opened, c) {
            (Some(TaskChange::Open(t)), TaskChange::Reassign { queue, .. }) => t.queue = queue.clone(),
            (Some(TaskChange::Open(t)), TaskChange::Close { outcome, .. }) => {
                t.status = "closed".into();
                t.outcome = Some(outcome.clone());
            }
            _ => {
                // Reassign then close of an existing task: the close alone is what lasts (a
                // closed task's queue no longer matters), so keep one write per item.
                if let TaskChange::Close { .. } = c {
                    out.retain(|o| !matches!(o, TaskChange::Reassign { id: rid, .. } if rid == id));
                }
                if let TaskChange::Reassign { .. } = c {
                    out.retain(|o| !matches!(o, TaskChange::Reassign { id: rid, .. } if rid == id));
                }
                out.push(c.clone());
            }
        }
    }
    out
}

impl DynamoStore {
    fn put_new_task(
        &self,
        task: &TaskRecord,
        queue: &str,
        outcome: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Item::new();
        item.insert("PK".into(), s(format!("TASK#{}", task.id)));
        item.insert("SK".into(), s("TASK"));
        if outcome.is_none() {
            item.insert("GSI2PK".into(), s("TASKS#open"));
            item.insert("GSI2SK".into(), s(format!("{:015}#{}", task.created_at, task.id)));
            // An open event wait is also listed in gsi1 under its pattern's source and detail
            // type, where an event finds it without reading every open task.
            if let Some(key) = task.wait.as_ref().and_then(baton_runtime::wait_index::wait_key_of) {
                item.insert("GSI1PK".into(), s(wait_pk(&key)));
                item.insert("GSI1SK".into(), s(format!("{:015}#{}", task.created_at, task.id)));
            }
        }
        item.insert("body".into(), s(to_json(task)?));
        item.insert("queue".into(), s(queue));
        if let Some(o) = outcome {
            item.insert("outcome".into(), s(o));
        }
        self.put_new(item)
    }

    pub(super) fn task_item(&self, change: &TaskChange) -> Result<TransactWriteItem, StoreError> {
        match change {
            TaskChange::Open(task) => self.put_new_task(task, &task.queue, task.outcome.as_deref()),
            TaskChange::Reassign { id, queue } => self.set_task_field(id, "queue", queue, ""),
            // Leaving the indexes is what takes the task off the open list (and a wait off its
            // event's candidates).
            TaskChange::Close { id, outcome } => {
                self.set_task_field(id, "outcome", outcome, " REMOVE GSI2PK, GSI2SK, GSI1PK, GSI1SK")
            }
        }
    }

    /// An update of one attribute of an existing task item, plus any `extra` update clause.
    fn set_task_field(
        &self,
        id: &TaskId,
        field: &str,
        value: &str,
        extra: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("PK", s(format!("TASK#{id}")))
            .key("SK", s("TASK"))
            .update_expression(format!("SET #f = :v{extra}"))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#f", field)
            .expression_attribute_values(":v", s(value))
            .build()
            .map_err(backend("update"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
