//! The `errorCode`s of records that a `lambda` or `command` processor could
//! not process: Firehose's own where Firehose has one (its "Data
//! Transformation Failure Handling" and CloudWatch error-log pages), so that
//! alarms and queries written against Firehose's `processing-failed` output
//! keep working.

/// The function raised or returned an error (`X-Amz-Function-Error`), or the
/// command exited or answered with Lambda's error object.
pub const FUNCTION_ERROR: &str = "Lambda.FunctionError";
/// Throttled: HTTP 429, `TooManyRequestsException`.
pub const INVOKE_LIMIT_EXCEEDED: &str = "Lambda.InvokeLimitExceeded";
/// The response is not `{records: [...]}` as the contract has it (not JSON,
/// an unknown `result`, `data` that is not base64, ...).
pub const JSON_PROCESSING: &str = "Lambda.JsonProcessingException";
/// A record sent was not answered (or was answered with an id never sent).
pub const MISSING_RECORD_ID: &str = "Lambda.MissingRecordId";
/// A record was answered more than once.
pub const DUPLICATED_RECORD_ID: &str = "Lambda.DuplicatedRecordId";
/// The function answered the record `ProcessingFailed`.
pub const PROCESSING_FAILED: &str = "Lambda.ProcessingFailed";
/// No answer in time.
pub const FUNCTION_TIMED_OUT: &str = "Lambda.FunctionTimedOut";
/// The function does not exist.
pub const RESOURCE_NOT_FOUND: &str = "Lambda.ResourceNotFound";
/// The caller may not invoke the function.
pub const INVOKE_ACCESS_DENIED: &str = "Lambda.InvokeAccessDenied";
/// The Lambda service failed (5xx) or could not be reached.
pub const SERVICE_EXCEPTION: &str = "Lambda.ServiceException";
/// spillway's own: one record whose event entry alone is over the 6 MB
/// request limit (Firehose cannot meet this: its records are at most
/// 1,000 KiB).
pub const REQUEST_TOO_LARGE: &str = "Lambda.RequestTooLarge";
/// spillway's own: a response over the 6 MB response limit (Lambda refuses
/// those itself; a `command` or another Invoke API server may not).
pub const RESPONSE_TOO_LARGE: &str = "Lambda.ResponseTooLarge";
