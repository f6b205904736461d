//! Ctrl-C stops a running graph (`devices::schedule`): a `while` loop that would never end
//! returns `RunError::Interrupted` with the loop's span once the flag is set.
//!
//! The flag is process-wide, so this is the only test in its binary.

use std::time::{Duration, Instant};

use devices::schedule::{self, RunError};
use devices::{CpuDevice, Tensor, cancel};

#[test]
fn a_set_flag_stops_an_endless_loop() {
    let g = ir::graph::parse(
        "graph @forever(%x: f32[]) -> (f32[]) {
           %y: f32[] = while %x cond(%c: f32[]) {
             %t: bool[] = eq %c, %c
             yield %t, %c
           } body(%b: f32[]) {
             %n: f32[] = neg %b
             yield %n
           } @0:5..40
           yield %y
         }",
    )
    .expect("parses");
    ir::verify(&g).expect("verifies");
    cancel::clear();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            cancel::request();
        });
        let mut prints = Vec::new();
        schedule::run(
            &g,
            &CpuDevice::new(),
            &[Tensor::scalar(1.0f32)],
            &mut prints,
        )
    });
    cancel::clear();
    let err = result.expect_err("the loop never ends by itself");
    // The flag is seen either between nodes of a region, by the loop itself, or by the
    // device inside a kernel; each names where it stopped.
    match &err {
        RunError::Interrupted { span } => assert!(span.src == 0, "{span:?}"),
        RunError::Device { error, .. } => {
            assert_eq!(**error, devices::DeviceError::Interrupted, "{err:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
