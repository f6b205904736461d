//! Prints a generated MindScript program that checks clean, for timing `ms check` on long
//! scripts: `cargo run -p ms-tests --example gen_program -- LINES [SEED] > big.ms`.

use ms_tests::inputs::Rng;
use ms_tests::programs::valid_program;

fn main() {
    let mut args = std::env::args().skip(1);
    let lines = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    print!("{}", valid_program(&mut Rng::new(seed), lines));
}
