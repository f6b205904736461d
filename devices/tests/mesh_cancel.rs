//! Ctrl-C (`devices::cancel`) reaches ranks waiting in a collective (`devices::mesh::Comm`):
//! they return `DeviceError::Interrupted` instead of waiting for a rank that will not come,
//! and the communicator is aborted, so a later call fails instead of mismatching.
//!
//! The flag is process-wide, so this is the only test in its binary.

use std::thread;
use std::time::{Duration, Instant};

use devices::mesh::{Comm, ReduceKind};
use devices::{CpuDevice, DeviceError, Tensor, cancel};

#[test]
fn a_set_flag_stops_ranks_waiting_in_a_collective() {
    cancel::clear();
    let mut comms = Comm::group(3).into_iter();
    let (c0, c1, c2) = match (comms.next(), comms.next(), comms.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => panic!("three handles"),
    };
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).expect("a tensor");
    let waiters: Vec<_> = [c0, c1]
        .into_iter()
        .map(|comm| {
            let x = x.clone();
            thread::spawn(move || {
                let dev = CpuDevice::new();
                // Rank 2 never joins: only Ctrl-C ends the wait.
                let r = comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1, 2]);
                comm.finish();
                (r, Instant::now())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    cancel::request();
    let set_at = Instant::now();
    for w in waiters {
        let (r, done) = w.join().expect("the waiting rank ends");
        assert_eq!(r.err(), Some(DeviceError::Interrupted));
        assert!(
            done.saturating_duration_since(set_at) < Duration::from_secs(2),
            "the wait looks at the flag often"
        );
    }
    // Once the flag is cleared, the communicator stays stopped: its ranks no longer agree
    // on the sequence of their calls.
    cancel::clear();
    let dev = CpuDevice::new();
    match c2.all_reduce(&dev, &x, ReduceKind::Sum, &[2]) {
        Err(DeviceError::Collective { op, message }) => {
            assert_eq!(op, "all_reduce");
            assert!(message.ends_with("stopped: interrupted"), "{message}");
        }
        other => panic!("expected the communicator to be stopped, got {other:?}"),
    }
    c2.finish();
}
