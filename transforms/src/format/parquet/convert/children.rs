//! The named children of a struct, and the top-level columns of a row:
//! which column a JSON key feeds, by the key rules. The parser
//! ([`super::stream`]) and the single pass walk these as well as the tree
//! rules, so the matching lives in one place; it is remembered per entry
//! position because records of one stream mostly list the same keys in
//! the same order.

use std::borrow::Cow;
use std::collections::HashMap;

use arrow_array::ArrayRef;
use arrow_schema::Fields;

use super::{ColumnBuilder, ConvertError, KeyRules};
use crate::format::parquet::json::Json;
use crate::format::parquet::schema::{struct_fields, Column};

/// Named children matched by normalized name.
#[derive(Debug)]
pub(in crate::format::parquet) struct Children {
    pub(super) fields: Fields,
    pub(in crate::format::parquet) builders: Vec<ColumnBuilder>,
    by_key: HashMap<Box<str>, usize>,
    hints: KeyHints,
}

/// Entry position in an object → the key found at that position last time,
/// as spelt in the record, and its column. Records of one stream mostly
/// list the same keys in the same order, so comparing a key with last
/// time's spelling usually replaces normalizing it and a hash lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::format::parquet) struct KeyHints(Vec<Option<(usize, Box<str>)>>);

/// Entry positions remembered in [`KeyHints`].
const MAX_HINTS: usize = 1024;

impl KeyHints {
    /// The column of `key` at `position`, if it is spelt there as last time.
    pub(in crate::format::parquet) fn get(&self, position: usize, key: &str) -> Option<usize> {
        match self.0.get(position) {
            Some(Some((index, spelling))) if **spelling == *key => Some(*index),
            _ => None,
        }
    }

    /// Remembers that `key` at `position` feeds column `index`.
    pub(in crate::format::parquet) fn set(&mut self, position: usize, key: &str, index: usize) {
        if position >= MAX_HINTS {
            return;
        }
        if position >= self.0.len() {
            self.0.resize(position + 1, None);
        }
        self.0[position] = Some((index, key.into()));
    }
}

impl Children {
    pub(super) fn new(
        path: &str,
        columns: &[Column],
        rules: &KeyRules,
        keys: Option<&HashMap<String, String>>,
    ) -> Self {
        let mut by_key = HashMap::new();
        let mut builders = Vec::with_capacity(columns.len());
        for (index, column) in columns.iter().enumerate() {
            let child_path = if path.is_empty() {
                column.name.clone()
            } else {
                format!("{path}.{}", column.name)
            };
            builders.push(ColumnBuilder::new(&child_path, &column.ty, rules));
            let key = keys.and_then(|k| k.get(&column.name)).unwrap_or(&column.name);
            let key = if rules.case_insensitive {
                key.to_lowercase()
            } else {
                key.clone()
            };
            by_key.insert(key.into_boxed_str(), index);
        }
        Self {
            fields: struct_fields(columns),
            builders,
            by_key,
            hints: KeyHints::default(),
        }
    }

    /// The column fed by the key at `position` in its object.
    pub(in crate::format::parquet) fn find(&mut self, position: usize, key: &str, rules: &KeyRules) -> Option<usize> {
        if let Some(hint) = self.hints.get(position, key) {
            return Some(hint);
        }
        let found = self.lookup(key, rules);
        if let Some(index) = found {
            self.hints.set(position, key, index);
        }
        found
    }

    /// The column fed by `key`, by the key rules.
    pub(in crate::format::parquet) fn lookup(&self, key: &str, rules: &KeyRules) -> Option<usize> {
        match self.by_key.get(key) {
            Some(&index) => Some(index),
            None => match rules.normalize(key) {
                Cow::Borrowed(_) => None,
                Cow::Owned(k) => self.by_key.get(k.as_str()).copied(),
            },
        }
    }

    /// Appends one parsed object's entries, a null for each missing column
    /// (the tree rules; records take [`super::stream`]'s way).
    pub(super) fn append_object(&mut self, entries: &[(Cow<str>, Json)], rules: &KeyRules) -> Result<(), ConvertError> {
        const NONE: usize = usize::MAX;
        // Which entry feeds each column (the last one, if a key repeats).
        let mut slots: smallvec_free::Slots = smallvec_free::Slots::new(self.builders.len());
        for (entry, (key, _)) in entries.iter().enumerate() {
            if let Some(index) = self.find(entry, key, rules) {
                slots.set(index, entry);
            }
        }
        for (index, builder) in self.builders.iter_mut().enumerate() {
            match slots.get(index) {
                NONE => builder.append_null(),
                entry => builder.append(&entries[entry].1, rules)?,
            }
        }
        Ok(())
    }

    pub(super) fn append_null(&mut self) {
        for builder in &mut self.builders {
            builder.append_null();
        }
    }

    pub(in crate::format::parquet) fn truncate(&mut self, len: usize) {
        for builder in &mut self.builders {
            builder.truncate(len);
        }
    }

    pub(super) fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders.iter_mut().map(ColumnBuilder::finish).collect()
    }
}

/// Entry index per column without a heap allocation for small structs.
pub(in crate::format::parquet) mod smallvec_free {
    // On the stack by design: the small variant is the point.
    #[allow(clippy::large_enum_variant)]
    pub(in crate::format::parquet) enum Slots {
        Small([usize; 32]),
        Large(Vec<usize>),
    }

    impl Slots {
        pub(in crate::format::parquet) fn new(len: usize) -> Self {
            if len <= 32 {
                Slots::Small([usize::MAX; 32])
            } else {
                Slots::Large(vec![usize::MAX; len])
            }
        }
        pub(in crate::format::parquet) fn set(&mut self, index: usize, entry: usize) {
            match self {
                Slots::Small(a) => a[index] = entry,
                Slots::Large(v) => v[index] = entry,
            }
        }
        pub(in crate::format::parquet) fn get(&self, index: usize) -> usize {
            match self {
                Slots::Small(a) => a[index],
                Slots::Large(v) => v[index],
            }
        }
    }
}
