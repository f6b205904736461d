use super::*;

fn t<T: devices::Elem>(v: Vec<T>, shape: &[usize]) -> Tree<Tensor> {
    Tree::Leaf(Tensor::from_vec(v, shape).expect("tensor"))
}

fn record(fields: Vec<(&str, Tree<Tensor>)>) -> Tree<Tensor> {
    Tree::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn bytes_of(tree: &Tree<Tensor>) -> Vec<u8> {
    let mut out = Vec::new();
    write(tree, &mut out).expect("writes");
    out
}

fn read_all(bytes: &[u8]) -> Result<Tree<Array>, Error> {
    read(bytes, &mut |_, _| true)
}

/// The tree read back, as the written tree's leaves (`f64` values, dtype and shape).
fn same(a: &Tree<Array>, b: &Tree<Tensor>) -> bool {
    match (a, b) {
        (Tree::Leaf(x), Tree::Leaf(y)) => {
            let x = x.clone().into_tensor().expect("tensor");
            x.dtype() == y.dtype() && x.shape() == y.shape() && x.to_f64_vec() == y.to_f64_vec()
        }
        (Tree::Tuple(x), Tree::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Tree::Record(x), Tree::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => false,
    }
}

/// A file from a JSON header text and data bytes (the header length written as given).
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn values_round_trip_with_their_structure() {
    let cases = vec![
        t(vec![1.0f32, 2.0, 3.0], &[3]),
        Tree::Tuple(vec![t(vec![1i64], &[]), t(vec![true, false], &[2])]),
        record(vec![
            (
                "l1",
                record(vec![
                    ("w", t(vec![0.5f64; 6], &[2, 3])),
                    ("b", t(vec![-1i32, 2, 3], &[3])),
                ]),
            ),
            (
                "opt",
                Tree::Tuple(vec![
                    t(vec![0.0f32; 0], &[0, 2]),
                    t(vec![1.0f32; 12], &[12]),
                    t(vec![7i64], &[1]),
                ]),
            ),
        ]),
        // Eleven items: positions 10 and 2 sort differently as text and as numbers.
        Tree::Tuple((0..11).map(|i| t(vec![i as f32], &[1])).collect()),
        Tree::Tuple(vec![]),
    ];
    for tree in cases {
        let bytes = bytes_of(&tree);
        let back = read_all(&bytes).expect("reads back");
        assert!(same(&back, &tree), "{back:?} is not {tree:?}");
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        assert_eq!((8 + header_len) % 8, 0, "the data is aligned");
    }
}

#[test]
fn names_are_dotted_paths_and_the_structure_is_metadata() {
    let tree = record(vec![
        ("l1", record(vec![("w", t(vec![1.0f32], &[1]))])),
        ("opt", Tree::Tuple(vec![t(vec![2.0f32], &[1])])),
    ]);
    let bytes = bytes_of(&tree);
    let len = usize::try_from(u64::from_le_bytes(bytes[..8].try_into().expect("8"))).expect("fits");
    let header: Json = serde_json::from_slice(&bytes[8..8 + len]).expect("JSON");
    let keys: Vec<&String> = header.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["__metadata__", "l1.w", "opt.0"]);
    assert_eq!(
        header["__metadata__"][STRUCTURE_KEY],
        Json::from(r#"{"l1":{"w":null},"opt":[null]}"#)
    );
    assert_eq!(header["opt.0"]["data_offsets"], serde_json::json!([4, 8]));
}

#[test]
fn files_without_a_structure_are_read_from_their_names() {
    let f = |header: &str, n: usize| file(header, &vec![0u8; n]);
    let tree = read_all(&f(
        r#"{"layers.1.w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},
            "layers.0.w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
            "bias":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}"#,
        16,
    ))
    .expect("reads");
    let Tree::Record(top) = &tree else {
        panic!("a record: {tree:?}")
    };
    assert!(matches!(top.get("bias"), Some(Tree::Leaf(_))));
    let Some(Tree::Tuple(layers)) = top.get("layers") else {
        panic!("layers is a tuple: {tree:?}")
    };
    assert_eq!(layers.len(), 2);
    // Positions that skip a number make a record.
    let tree = read_all(&f(
        r#"{"0":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
            "2":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        8,
    ))
    .expect("reads");
    assert!(matches!(tree, Tree::Record(_)));
    // No tensors at all is unit.
    assert_eq!(read_all(&f("{}", 0)), Ok(Tree::Tuple(vec![])));
}

/// Hostile files: each gives an error (the one expected), never a panic, and nothing is
/// allocated from a size the file claims before it is checked.
#[test]
fn hostile_files_are_refused() {
    const W: &str = r#""dtype":"F32","shape":[2],"data_offsets":[0,8]"#;
    let ok_entry = format!("{{\"w\":{{{W}}}}}");
    let mut not_utf8 = file(&ok_entry, &[0; 8]);
    not_utf8[10] = 0xFF;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let many_dots_clash = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
        "a.b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "shorter than the 8-byte"),
        (
            "seven bytes",
            vec![1, 0, 0, 0, 0, 0, 0],
            "shorter than the 8-byte",
        ),
        (
            "header past EOF",
            {
                let mut v = file(&ok_entry, &[0; 8]);
                v[0] = 200;
                v
            },
            "runs past the end",
        ),
        (
            "header length u64::MAX",
            {
                let mut v = u64::MAX.to_le_bytes().to_vec();
                v.extend_from_slice(b"{}");
                v
            },
            "over the 100 MB limit",
        ),
        (
            "header length over 100 MB",
            {
                let mut v = 100_000_001u64.to_le_bytes().to_vec();
                v.extend_from_slice(b"{}");
                v
            },
            "over the 100 MB limit",
        ),
        (
            "truncated JSON",
            file(r#"{"w":{"dtype":"F32""#, &[]),
            "not valid JSON",
        ),
        ("JSON array", file("[1, 2]", &[]), "not valid JSON"),
        ("JSON string", file("\"x\"", &[]), "not valid JSON"),
        ("not UTF-8", not_utf8, "not valid JSON"),
        (
            "nested 10,000 deep",
            file(&format!("{{\"__metadata__\":{deep}}}"), &[]),
            "not valid JSON",
        ),
        (
            "trailing text after the JSON",
            file(&format!("{ok_entry} x"), &[0; 8]),
            "not valid JSON",
        ),
        (
            "duplicate names",
            file(&format!("{{\"w\":{{{W}}},\"w\":{{{W}}}}}"), &[0; 8]),
            "appears twice",
        ),
        (
            "duplicate metadata",
            file(r#"{"__metadata__":{},"__metadata__":{}}"#, &[]),
            "appears twice",
        ),
        (
            "empty name",
            file(&format!("{{\"\":{{{W}}}}}"), &[0; 8]),
            "empty name",
        ),
        (
            "entry not an object",
            file(r#"{"w":[1,2]}"#, &[]),
            "not an object",
        ),
        (
            "missing dtype",
            file(r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
            "no `dtype`",
        ),
        (
            "unknown dtype",
            file(
                r#"{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "`Q7`",
        ),
        (
            "F16 dtype",
            file(
                r#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "`F16`, not one MindScript reads",
        ),
        (
            "shape not a list",
            file(
                r#"{"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}}"#,
                &[0; 16],
            ),
            "no `shape` list",
        ),
        (
            "negative dim",
            file(
                r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "non-negative",
        ),
        (
            "fractional dim",
            file(
                r#"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "non-negative",
        ),
        (
            "shape overflows",
            file(
                r#"{"w":{"dtype":"F64","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "more bytes than memory",
        ),
        (
            "huge shape, small offsets",
            file(
                r#"{"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "has 4000000000000",
        ),
        (
            "offsets missing",
            file(r#"{"w":{"dtype":"F32","shape":[1]}}"#, &[0; 4]),
            "`data_offsets`",
        ),
        (
            "three offsets",
            file(
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
                &[0; 8],
            ),
            "`data_offsets`",
        ),
        (
            "offsets past EOF",
            file(
                r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                &[0; 8],
            ),
            "run past",
        ),
        (
            "offsets beyond u64",
            file(
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#,
                &[0; 4],
            ),
            "`data_offsets`",
        ),
        (
            "begin after end",
            file(
                r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#,
                &[0; 8],
            ),
            "run past",
        ),
        (
            "size mismatch",
            file(
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "hold 8 bytes",
        ),
        (
            "overlapping offsets",
            file(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
            "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                &[0; 12],
            ),
            "overlap",
        ),
        (
            "same offsets twice",
            file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
            "b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "overlap",
        ),
        (
            "gap between tensors",
            file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
            "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                &[0; 12],
            ),
            "4 bytes that no tensor uses",
        ),
        (
            "data before the first tensor",
            file(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                &[0; 8],
            ),
            "no tensor uses",
        ),
        (
            "unused bytes at the end",
            file(&ok_entry, &[0; 9]),
            "1 bytes that no tensor uses",
        ),
        ("truncated data", file(&ok_entry, &[0; 7]), "run past"),
        (
            "bool byte 2",
            file(
                r#"{"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#,
                &[1, 2],
            ),
            "byte 2",
        ),
        (
            "metadata not an object",
            file(r#"{"__metadata__":[1]}"#, &[]),
            "metadata is not an object",
        ),
        (
            "metadata value not a string",
            file(r#"{"__metadata__":{"k":1}}"#, &[]),
            "not a string",
        ),
        (
            "structure not JSON",
            file(r#"{"__metadata__":{"mindscript.structure":"{"}}"#, &[]),
            "structure is not valid JSON",
        ),
        (
            "structure names a missing tensor",
            file(
                &format!(
                    r#"{{"__metadata__":{{"mindscript.structure":"{{\"v\":null}}"}},"w":{{{W}}}}}"#
                ),
                &[0; 8],
            ),
            "`v`, which the file lacks",
        ),
        (
            "structure leaves a tensor out",
            file(
                &format!(r#"{{"__metadata__":{{"mindscript.structure":"[]"}},"w":{{{W}}}}}"#),
                &[0; 8],
            ),
            "does not name the tensor `w`",
        ),
        (
            "structure field with a dot",
            file(
                &format!(
                    r#"{{"__metadata__":{{"mindscript.structure":"{{\"w.x\":null}}"}},"w":{{{W}}}}}"#
                ),
                &[0; 8],
            ),
            "holds a dot",
        ),
        (
            "structure of a number",
            file(
                &format!(r#"{{"__metadata__":{{"mindscript.structure":"7"}},"w":{{{W}}}}}"#),
                &[0; 8],
            ),
            "holds 7",
        ),
        (
            "a name both tensor and group",
            file(many_dots_clash, &[0; 8]),
            "both as a tensor and as a group",
        ),
        (
            "a name with an empty part",
            file(
                r#"{"a..b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "empty part",
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, bytes, want) in cases {
        match read_all(&bytes) {
            Err(e) => assert!(e.to_string().contains(want), "{name}: {e}"),
            Ok(tree) => panic!("{name}: read {tree:?}"),
        }
    }
    // The caller's cap refuses a tensor before it is made.
    let r = read(&file(&ok_entry, &[0; 8]), &mut |_, n| n < 2);
    assert!(matches!(r, Err(Error::Refused { numel: 2, .. })), "{r:?}");
}

/// Every prefix of a valid file, and every single-byte corruption of its header, is an
/// error or a value, never a panic.
#[test]
fn truncations_and_corruptions_never_panic() {
    let tree = record(vec![
        ("a", t(vec![1.0f32, 2.0], &[2])),
        (
            "b",
            Tree::Tuple(vec![t(vec![true], &[1]), t(vec![3i64], &[])]),
        ),
    ]);
    let bytes = bytes_of(&tree);
    for n in 0..bytes.len() {
        assert!(
            read_all(&bytes[..n]).is_err(),
            "the prefix of {n} bytes read"
        );
    }
    let header_end =
        8 + usize::try_from(u64::from_le_bytes(bytes[..8].try_into().expect("8"))).expect("fits");
    for i in 0..header_end {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = read_all(&b);
        }
    }
}
