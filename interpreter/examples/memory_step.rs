//! Peak tensor memory of the digits MLP training step, eager against staged
//! (`bench/memory.sh` runs it from the repository root; issue 7).
//!
//! Each configuration gets a fresh session that runs `bench/memory_step.ms` (data, model,
//! the step written eagerly and under `@jit`), calls the step once (so that staging is not
//! measured), then starts a new peak (`devices::memory::reset_peak`) and trains one epoch
//! of batches of 64 with the step. It prints the peak of live host tensor bytes during the
//! epoch above what was alive when it began (the data and the model, the same in every
//! configuration), the buffers made per step and the microseconds per step:
//!
//! - eager: `eager_step`, op by op with the tape;
//! - staged: `staged_step` with the optimizer's pipeline, results written in place;
//! - staged, no in-place: the same graph, every result in a buffer of its own;
//! - staged, no passes: the unoptimized graph (unfused), written in place.
//!
//! `cargo run --release -p interpreter --example memory_step [EPOCHS]`

use std::time::Instant;

use interpreter::{Options, Session};

// The allocator of `ms` (see `src/main.rs`), so that the times per step are those of `ms`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One configuration: its name, the step it calls, and its session options.
struct Config {
    name: &'static str,
    step: &'static str,
    in_place: bool,
    passes: Option<Vec<ir::passes::Pass>>,
}

fn run(src: &str, config: &Config, epochs: usize) -> Result<(), String> {
    let mut session = Session::with_options(Options {
        in_place: config.in_place,
        passes: config.passes.clone(),
        ..Options::default()
    });
    let eval = |session: &mut Session, text: &str| -> Result<(), String> {
        let out = session.eval(text);
        match out.diagnostics.first() {
            Some(d) => Err(format!("{}: {d:?}", config.name)),
            None => Ok(()),
        }
    };
    eval(&mut session, src)?;
    let step = config.step;
    eval(
        &mut session,
        &format!("p = {step}(p, xtr[0:batch], ytr[0:batch])"),
    )?;
    eval(&mut session, "let n = 0")?;
    let base = devices::memory::stats();
    devices::memory::reset_peak();
    let start = Instant::now();
    for epoch in 0..epochs {
        eval(
            &mut session,
            &format!(
                "seed({epoch})\nfor (xb, yb) in batches((xtr, ytr), batch, shuffle: true, drop_last: true) {{\n    p = {step}(p, xb, yb)\n    n = n + 1\n}}"
            ),
        )?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let end = devices::memory::stats();
    // 1437 training rows in batches of 64, the last partial one dropped.
    let steps = (epochs * (1437 / 64)) as f64;
    println!(
        "| {} | {} | {} | {:.0} | {:.0} |",
        config.name,
        end.peak_bytes - base.live_bytes,
        base.live_bytes,
        (end.buffers - base.buffers) as f64 / steps,
        seconds / steps * 1e6,
    );
    Ok(())
}

fn main() {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3usize);
    let src = match std::fs::read_to_string("bench/memory_step.ms") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench/memory_step.ms: {e} (run from the repository root)");
            std::process::exit(2);
        }
    };
    let configs = [
        Config {
            name: "eager",
            step: "eager_step",
            in_place: true,
            passes: None,
        },
        Config {
            name: "staged",
            step: "staged_step",
            in_place: true,
            passes: None,
        },
        Config {
            name: "staged, no in-place",
            step: "staged_step",
            in_place: false,
            passes: None,
        },
        Config {
            name: "staged, no passes",
            step: "staged_step",
            in_place: true,
            passes: Some(Vec::new()),
        },
    ];
    println!(
        "| step | peak above the start (bytes) | live at the start (bytes) | buffers per step | µs per step |"
    );
    println!("|---|---|---|---|---|");
    for config in &configs {
        if let Err(e) = run(&src, config, epochs) {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
