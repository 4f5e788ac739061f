//! The plain vectors the column builders are made of: values, validity
//! bits, string bytes and offsets. They can be truncated back to a row
//! count, so a record that fails half-way is rolled back, and they are
//! handed over as Arrow buffers that leave room for the next chunk, which
//! is about the size of the last.

use arrow_array::StringArray;
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

#[derive(Debug)]
pub(in crate::format::parquet) struct Prim<T> {
    pub(super) values: Vec<T>,
    pub(super) valid: Vec<bool>,
    pub(super) nulls: usize,
}

impl<T: Default + Copy> Prim<T> {
    pub(super) fn new() -> Self {
        Self {
            values: Vec::new(),
            valid: Vec::new(),
            nulls: 0,
        }
    }
    pub(super) fn push(&mut self, v: T) {
        self.values.push(v);
        self.valid.push(true);
    }
    pub(super) fn push_null(&mut self) {
        self.values.push(T::default());
        self.valid.push(false);
        self.nulls += 1;
    }
    pub(super) fn truncate(&mut self, len: usize) {
        if len < self.valid.len() {
            self.nulls -= self.valid[len..].iter().filter(|v| !**v).count();
        }
        self.values.truncate(len);
        self.valid.truncate(len);
    }
    pub(super) fn take(&mut self) -> (ScalarBuffer<T>, Option<NullBuffer>)
    where
        T: arrow_buffer::ArrowNativeType,
    {
        let nulls = take_nulls(&mut self.valid, &mut self.nulls);
        (ScalarBuffer::from(take_sized(&mut self.values)), nulls)
    }
}

/// The vector's contents, leaving in its place an empty one with room for
/// as many: the next chunk of a column is about the size of the last, and
/// growing it from empty again would copy it several times.
pub(in crate::format::parquet) fn take_sized<T>(vector: &mut Vec<T>) -> Vec<T> {
    let room = vector.len();
    std::mem::replace(vector, Vec::with_capacity(room))
}

pub(super) fn take_nulls(valid: &mut Vec<bool>, nulls: &mut usize) -> Option<NullBuffer> {
    let had_nulls = std::mem::replace(nulls, 0) > 0;
    if had_nulls {
        Some(NullBuffer::from(take_sized(valid)))
    } else {
        valid.clear();
        None
    }
}

#[derive(Debug)]
pub(in crate::format::parquet) struct Validity {
    pub(super) valid: Vec<bool>,
    nulls: usize,
}

impl Validity {
    pub(super) fn new() -> Self {
        Self {
            valid: Vec::new(),
            nulls: 0,
        }
    }
    pub(in crate::format::parquet) fn push(&mut self, v: bool) {
        self.valid.push(v);
        if !v {
            self.nulls += 1;
        }
    }
    pub(super) fn truncate(&mut self, len: usize) {
        if len < self.valid.len() {
            self.nulls -= self.valid[len..].iter().filter(|v| !**v).count();
        }
        self.valid.truncate(len);
    }
    pub(super) fn take(&mut self) -> Option<NullBuffer> {
        take_nulls(&mut self.valid, &mut self.nulls)
    }
}

/// A UTF-8 column: bytes and offsets, truncatable.
#[derive(Debug)]
pub(in crate::format::parquet) struct Strings {
    offsets: Vec<i32>,
    data: Vec<u8>,
    validity: Validity,
}

impl Strings {
    pub(in crate::format::parquet) fn new() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
            validity: Validity::new(),
        }
    }
    pub(in crate::format::parquet) fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.offsets.push(self.data.len() as i32);
        self.validity.push(true);
    }
    pub(in crate::format::parquet) fn push_null(&mut self) {
        self.offsets.push(self.data.len() as i32);
        self.validity.push(false);
    }
    pub(in crate::format::parquet) fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub(in crate::format::parquet) fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.data
            .truncate(*self.offsets.last().expect("offsets start with 0") as usize);
        self.validity.truncate(len);
    }
    pub(in crate::format::parquet) fn finish(&mut self) -> StringArray {
        let offsets = take_sized(&mut self.offsets);
        self.offsets.push(0);
        let data = take_sized(&mut self.data);
        let nulls = self.validity.take();
        // SAFETY: offsets start at 0, never decrease and end at data.len();
        // data is the concatenation of `&str`s, so valid UTF-8 at every offset.
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                Buffer::from_vec(data),
                nulls,
            )
        }
    }
}
