//! What a prefix template is made of, for tools that describe the layout
//! of its keys (the Athena DDL of `spillway schema`): given by
//! [`super::KeyTemplate::parts`], filled in by each expression.

/// One piece of a prefix template, as [`KeyTemplate::parts`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixPart {
    /// Text copied as it is (quoted text of a timestamp pattern included).
    Text(String),
    /// A field of the timestamp: its letters in the pattern, as Java's
    /// `DateTimeFormatter` (and `SimpleDateFormat`) spell it (`yyyy`, `MM`,
    /// `H`, ...), and what it counts.
    Time {
        letters: &'static str,
        unit: TimeField,
    },
    RandomString,
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:name}` or `!{partitionKeyFromLambda:name}`.
    PartitionKey {
        name: String,
        from_lambda: bool,
    },
}

/// What a timestamp field counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeField {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}
