//! How an AWS SDK failure becomes a store error: the operation's name and the SDK's full error
//! context (service code and message), which the plain `Display` of an SDK error leaves out.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use baton_runtime::StoreError;

/// Maps an SDK error of the operation `what` (e.g. `"SQS SendMessage"`) to [`StoreError::Backend`].
pub(crate) fn aws_err<E: std::error::Error + 'static>(what: &str) -> impl Fn(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {}", DisplayErrorContext(&e)))
}

/// `Ok` when the call succeeded, or failed only because its work was done already: the service
/// said `benign` (a schedule created before, an item deleted before); any other failure through
/// `fail`.
pub(crate) fn ok_unless<T, E, R>(
    benign: &str,
    result: Result<T, SdkError<E, R>>,
    fail: impl FnOnce(SdkError<E, R>) -> StoreError,
) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().and_then(|s| s.code()) == Some(benign) => Ok(()),
        Err(e) => Err(fail(e)),
    }
}
