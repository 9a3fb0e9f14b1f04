//! What writing one transition costs, counted as its items are built (see docs/aws.md, "What it
//! costs").

use aws_sdk_dynamodb::types::AttributeValue;

/// What writing one transition costs in DynamoDB requests and units, as its items are built.
/// Both indexes project every attribute, so an item listed in one is written there too: a
/// standard write of the whole item when it enters or changes, one unit when it leaves.
#[derive(Default)]
pub(super) struct StoreCost {
    /// Write units of the transaction's items (a transaction bills two per KB of each).
    units: u64,
    /// Write units of the index copies (standard writes, one per KB).
    index_units: u64,
    extra: baton_runtime::metering::Usage,
}

pub(super) fn kb(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(1024).max(1)
}

impl StoreCost {
    pub(super) fn item(&mut self, bytes: usize) {
        self.units += 2 * kb(bytes);
    }

    /// A payload `attr` moved to the bucket (a reference in the item): one `PutObject`.
    pub(super) fn offloaded(&mut self, value: &AttributeValue) {
        if let AttributeValue::S(text) = value
            && crate::claim_check::reference(text).is_some()
        {
            self.more("S3.PutObject", 1);
        }
    }

    /// A seal also written to the witness bucket after the commit: one `PutObject`, counted as
    /// the claim check's are.
    pub(super) fn witnessed(&mut self) {
        self.more("S3.PutObject", 1);
    }

    /// An item of `bytes` written to an index as well.
    pub(super) fn index(&mut self, bytes: usize) {
        self.index_units += kb(bytes);
    }

    /// An item taken off an index (its key attributes removed, or the item deleted).
    pub(super) fn index_removal(&mut self) {
        self.index_units += 1;
    }

    pub(super) fn more(&mut self, key: &str, n: u64) {
        *self.extra.entry(key.to_owned()).or_insert(0) += n;
    }

    /// Deleting the delivered outbox row, billed by the removed item's size, and its index entry.
    pub(super) fn clear_outbox(&mut self, bytes: usize) {
        self.more("DynamoDB.DeleteItem", 1);
        self.more("DynamoDB.WriteUnits", kb(bytes) + 1);
    }

    /// Publishing the transition's lifecycle events after the commit: they are known, so only
    /// the update that takes their item (of `bytes`) off the pending index.
    pub(super) fn flush_bus(&mut self, bytes: usize) {
        self.more("DynamoDB.UpdateItem", 1);
        self.more("DynamoDB.WriteUnits", kb(bytes) + 1);
    }

    pub(super) fn usage(mut self) -> baton_runtime::metering::Usage {
        self.more("DynamoDB.TransactWriteItems", 1);
        self.more("DynamoDB.WriteUnits", self.units + self.index_units);
        self.extra
    }
}
