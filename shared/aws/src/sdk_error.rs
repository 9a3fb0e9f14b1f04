//! How an AWS SDK failure becomes a store error: the operation's name and the SDK's full error
//! context (service code and message), which the plain `Display` of an SDK error leaves out.

use aws_smithy_types::error::display::DisplayErrorContext;
use baton_runtime::StoreError;

/// Maps an SDK error of the operation `what` (e.g. `"SQS SendMessage"`) to [`StoreError::Backend`].
pub(crate) fn aws_err<E: std::error::Error + 'static>(what: &str) -> impl Fn(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {}", DisplayErrorContext(&e)))
}
