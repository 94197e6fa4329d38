//! Cutting the items out of a list response while its body is still arriving.
//!
//! A Kubernetes list is one JSON object, `{"kind": …, "metadata": {…}, "items": [{…}, …]}`.
//! serde_json decodes a value either whole, from a slice, or byte by byte from a reader; neither
//! lets an item be handed on before the response has ended without also decoding it on the
//! thread that reads the body. [`ItemSplitter`] only scans for the structure (strings, nesting,
//! the `items` key), which is much cheaper than decoding, and hands out each item's bytes as soon
//! as its closing brace arrives, so the items of a large list are decoded and extracted while
//! the API server is still sending the rest. The bytes of an item are not checked here: whoever
//! decodes them does.

/// Why a body is not a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitError {
    /// The body does not start with a JSON object.
    #[error("the list response is not a JSON object")]
    NotAnObject,
    /// An element of `items` is not an object.
    #[error("an element of the list response's items is not an object")]
    ItemNotAnObject,
    /// A closing bracket without its opening one.
    #[error("the list response is not valid JSON (unbalanced brackets)")]
    Unbalanced,
    /// Bytes after the end of the list object.
    #[error("the list response has data after its end")]
    TrailingData,
    /// The body ended inside the list object.
    #[error("the list response ended early ({0} bytes)")]
    Truncated(u64),
}

/// Scanner state between two chunks of a body.
#[derive(Debug, Default)]
pub(crate) struct ItemSplitter {
    /// Bytes not yet handed out or dropped: from the start of the unfinished item, the unfinished
    /// top-level value or key (when one is open), else from the scan position.
    pending: Vec<u8>,
    /// Offset into `pending` up to which bytes have been scanned.
    scanned: usize,
    /// Bytes seen in all, for error messages.
    total: u64,
    /// Nesting depth at the scan position (1: inside the list object).
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1: the next string is a key (after `{` or `,`), not a value (after `:`).
    expect_key: bool,
    /// Start (in `pending`) of the depth-1 key being read.
    key_start: Option<usize>,
    /// The last depth-1 key read.
    key: Vec<u8>,
    /// Inside the `items` array.
    in_items: bool,
    /// Start (in `pending`) of the item being read.
    item_start: Option<usize>,
    /// Start (in `pending`) of the top-level `metadata` being read, and its bytes once read.
    metadata_start: Option<usize>,
    metadata: Option<Vec<u8>>,
    /// The list object has ended.
    done: bool,
}

impl ItemSplitter {
    /// A splitter at the start of a body.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Scans `chunk`, the next bytes of the body, and passes every item it completes to `item`
    /// (in the order of the list). An error of `item` stops the scan and is returned.
    pub(crate) fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut item: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        self.pending.extend_from_slice(chunk);
        self.total += chunk.len() as u64;
        let mut index = self.scanned;
        while index < self.pending.len() {
            let byte = self.pending[index];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                    if let Some(start) = self.key_start.take() {
                        self.key.clear();
                        self.key.extend_from_slice(&self.pending[start..index]);
                    }
                }
                index += 1;
                continue;
            }
            if byte.is_ascii_whitespace() {
                index += 1;
                continue;
            }
            if self.done {
                return Err(FeedError::Split(SplitError::TrailingData));
            }
            match byte {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.key_start = Some(index + 1);
                    } else {
                        self.starts_scalar()?;
                    }
                }
                b'{' | b'[' => {
                    match self.depth {
                        0 if byte == b'{' => self.expect_key = true,
                        0 => return Err(FeedError::Split(SplitError::NotAnObject)),
                        1 if self.key == b"items" && byte == b'[' => self.in_items = true,
                        1 if self.key == b"metadata" => self.metadata_start = Some(index),
                        2 if self.in_items && self.item_start.is_none() => {
                            if byte == b'[' {
                                return Err(FeedError::Split(SplitError::ItemNotAnObject));
                            }
                            self.item_start = Some(index);
                        }
                        _ => {}
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err(FeedError::Split(SplitError::Unbalanced));
                    }
                    self.depth -= 1;
                    match self.depth {
                        0 => self.done = true,
                        1 if self.in_items => self.in_items = false,
                        1 => {
                            if let Some(start) = self.metadata_start.take() {
                                self.metadata = Some(self.pending[start..=index].to_vec());
                            }
                        }
                        2 if self.in_items => {
                            if let Some(start) = self.item_start.take() {
                                item(&self.pending[start..=index]).map_err(FeedError::Item)?;
                            }
                        }
                        _ => {}
                    }
                }
                b':' if self.depth == 1 => self.expect_key = false,
                b',' if self.depth == 1 => self.expect_key = true,
                b':' | b',' => {}
                _ => self.starts_scalar()?,
            }
            index += 1;
        }
        // Keep only what an open item, key or metadata still needs.
        let keep = [self.item_start, self.key_start, self.metadata_start]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(index);
        self.pending.drain(..keep);
        self.scanned = index - keep;
        for start in [
            &mut self.item_start,
            &mut self.key_start,
            &mut self.metadata_start,
        ]
        .into_iter()
        .flatten()
        {
            *start -= keep;
        }
        Ok(())
    }

    /// A string, number, `true`, `false` or `null` starts here: allowed only where it is not
    /// the list itself or one of its items.
    fn starts_scalar<E>(&self) -> Result<(), FeedError<E>> {
        match self.depth {
            0 => Err(FeedError::Split(SplitError::NotAnObject)),
            2 if self.in_items && self.item_start.is_none() => {
                Err(FeedError::Split(SplitError::ItemNotAnObject))
            }
            _ => Ok(()),
        }
    }

    /// Checks that the body ended with the list object and returns its top-level `metadata`
    /// (its raw bytes), if it had one.
    pub(crate) fn finish(self) -> Result<Option<Vec<u8>>, SplitError> {
        if !self.done {
            return Err(if self.total == 0 {
                SplitError::NotAnObject
            } else {
                SplitError::Truncated(self.total)
            });
        }
        Ok(self.metadata)
    }
}

/// Why [`ItemSplitter::feed`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FeedError<E> {
    /// The body is not a list.
    Split(SplitError),
    /// The item callback failed.
    Item(E),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Feeds `body` in chunks of `size` bytes; returns the decoded items and the metadata.
    fn split(body: &[u8], size: usize) -> Result<(Vec<Value>, Option<Value>), SplitError> {
        let mut splitter = ItemSplitter::new();
        let mut items = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            splitter
                .feed(chunk, |item| {
                    items.push(serde_json::from_slice::<Value>(item).map_err(|e| e.to_string())?);
                    Ok::<(), String>(())
                })
                .map_err(|e| match e {
                    FeedError::Split(e) => e,
                    FeedError::Item(e) => panic!("an item did not decode: {e}"),
                })?;
        }
        let metadata = splitter.finish()?;
        Ok((
            items,
            metadata.map(|m| serde_json::from_slice(&m).expect("metadata decodes")),
        ))
    }

    fn list() -> Value {
        json!({
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "42", "continue": "next"},
            "items": [
                {"metadata": {"name": "a", "uid": "1"}, "data": {"k": "a \"quoted\" }] brace", "e": "\\"}},
                {"metadata": {"name": "b", "uid": "2"}, "data": {"items": "[{", "list": [1, {"x": []}]}},
                {"metadata": {"name": "ü", "uid": "3"}, "data": {}}
            ]
        })
    }

    #[test]
    fn items_and_metadata_come_out_whatever_the_chunking() {
        let body = serde_json::to_vec_pretty(&list()).unwrap();
        let expected_items = list()["items"].as_array().unwrap().clone();
        for size in [1, 2, 3, 7, 64, body.len()] {
            let (items, metadata) = split(&body, size).unwrap();
            assert_eq!(items, expected_items, "chunks of {size}");
            assert_eq!(metadata, Some(list()["metadata"].clone()), "chunks of {size}");
        }
    }

    #[test]
    fn keys_are_read_only_at_the_top_level_and_only_as_keys() {
        // A string value "items" and nested "items" keys are not the list's items.
        let body = br#"{"kind":"items","metadata":{"items":[{"no":1}]},"spec":{"items":[{"no":2}]},"items":[{"yes":3}]}"#;
        let (items, metadata) = split(body, 5).unwrap();
        assert_eq!(items, vec![json!({"yes": 3})]);
        assert_eq!(metadata, Some(json!({"items": [{"no": 1}]})));
    }

    #[test]
    fn items_before_metadata_and_an_empty_list_work() {
        let (items, metadata) =
            split(br#"{"items":[{"a":1}],"metadata":{"resourceVersion":"1"}}"#, 4).unwrap();
        assert_eq!(
            (items, metadata),
            (vec![json!({"a": 1})], Some(json!({"resourceVersion": "1"})))
        );
        let (items, metadata) = split(br#"{"kind":"List","items":[]}"#, 4).unwrap();
        assert_eq!((items, metadata), (vec![], None));
        let (items, _) = split(br#"{"items":null}"#, 4).unwrap();
        assert!(items.is_empty());
    }

    #[test]
    fn a_body_that_is_not_a_list_is_refused_by_name() {
        assert_eq!(split(b"", 4), Err(SplitError::NotAnObject));
        assert_eq!(split(b"[1]", 4), Err(SplitError::NotAnObject));
        assert_eq!(split(b"\"text\"", 4), Err(SplitError::NotAnObject));
        assert_eq!(split(br#"{"items":[1]}"#, 4), Err(SplitError::ItemNotAnObject));
        assert_eq!(
            split(br#"{"items":[{"a":1},"x"]}"#, 4),
            Err(SplitError::ItemNotAnObject)
        );
        assert_eq!(split(br#"{"items":[[]]}"#, 4), Err(SplitError::ItemNotAnObject));
        assert_eq!(
            split(br#"{"items":[{"a":1}]}}"#, 4),
            Err(SplitError::TrailingData)
        );
        assert_eq!(
            split(br#"{"items":[{"a":1}]} {}"#, 4),
            Err(SplitError::TrailingData)
        );
        assert_eq!(split(br#"{"a":1}]"#, 4), Err(SplitError::TrailingData));
        assert_eq!(split(br#"]"#, 4), Err(SplitError::Unbalanced));
        assert_eq!(
            split(br#"{"items":[{"a":1},{"b"#, 4),
            Err(SplitError::Truncated(21))
        );
    }

    #[test]
    fn an_item_error_stops_the_scan() {
        let mut splitter = ItemSplitter::new();
        let mut seen = 0;
        let result = splitter.feed(br#"{"items":[{"a":1},{"b":2}]}"#, |_| {
            seen += 1;
            Err("stop")
        });
        assert_eq!(result, Err(FeedError::Item("stop")));
        assert_eq!(seen, 1);
    }

    #[test]
    fn memory_holds_the_open_item_only() {
        let mut splitter = ItemSplitter::new();
        let item = format!(r#"{{"data":"{}"}}"#, "x".repeat(1000));
        splitter.feed(br#"{"items":["#, |_| Ok::<(), ()>(())).unwrap();
        for _ in 0..100 {
            splitter.feed(item.as_bytes(), |_| Ok::<(), ()>(())).unwrap();
            splitter.feed(b",", |_| Ok::<(), ()>(())).unwrap();
            assert!(
                splitter.pending.len() <= 1,
                "{} bytes kept",
                splitter.pending.len()
            );
        }
        splitter
            .feed(&item.as_bytes()[..500], |_| Ok::<(), ()>(()))
            .unwrap();
        assert_eq!(splitter.pending.len(), 500);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~\\\\\"{}\\[\\]:,é\n\t]{0,12}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"{\\[]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any list of objects, pretty or compact, in any chunking, splits into its items.
        #[test]
        fn any_list_splits_into_its_items(
            items in prop::collection::vec(prop::collection::btree_map("[a-z]{1,4}", value(), 0..4), 0..5),
            metadata in prop::collection::btree_map("[a-z]{1,4}", value(), 0..3),
            size in 1usize..40,
            pretty in any::<bool>(),
        ) {
            let items: Vec<Value> = items.into_iter().map(|m| Value::Object(m.into_iter().collect())).collect();
            let metadata = Value::Object(metadata.into_iter().collect());
            let body = json!({"metadata": metadata.clone(), "items": items.clone(), "kind": "List"});
            let bytes = if pretty { serde_json::to_vec_pretty(&body).unwrap() } else { serde_json::to_vec(&body).unwrap() };
            let (got, got_metadata) = split(&bytes, size).unwrap();
            prop_assert_eq!(got, items);
            prop_assert_eq!(got_metadata, Some(metadata));
        }
    }
}
