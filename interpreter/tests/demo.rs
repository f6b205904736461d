//! The demo trains for real: its loss falls and its held-out accuracy is high.

use std::path::Path;

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/data/digits.csv")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn demo_learns_the_digits() {
    let data = interpreter::demo::load_digits(&digits()).expect("digits load");
    assert_eq!(data.x.shape(), &[1797, 64]);
    let report = interpreter::demo::train(&data, 20, 64, |_| {}).expect("training runs");
    let l = &report.losses;
    assert!(l[0] > 1.0 && l[0] < 2.6, "first epoch loss {}", l[0]);
    assert!(
        l.windows(2).all(|w| w[1] < w[0]),
        "loss falls every epoch: {l:?}"
    );
    assert!(l[19] < 0.25, "final loss {}", l[19]);
    assert!(
        report.test_accuracy > 0.88,
        "accuracy {}",
        report.test_accuracy
    );
}

#[test]
fn bad_csv_is_an_error_with_position() {
    let dir = std::env::temp_dir().join(format!("ms-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.csv");
    let mut row = vec!["1"; 65];
    row[3] = "x7";
    std::fs::write(&file, format!("{}\n", row.join(","))).expect("write");
    let err = interpreter::demo::load_digits(&file.to_string_lossy()).expect_err("must fail");
    assert!(
        err.to_string().ends_with(":1:7: `x7` is not a number"),
        "{err}"
    );
    let missing = interpreter::demo::load_digits("/nonexistent/digits.csv").expect_err("must fail");
    assert!(
        missing
            .to_string()
            .starts_with("cannot read /nonexistent/digits.csv"),
        "{missing}"
    );
}
