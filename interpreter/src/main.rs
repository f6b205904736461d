//! `ms`: the MindScript command line.
//!
//! Until the language front end and the interpreter land, the binary offers one command,
//! `ms demo [DIGITS_CSV] [--epochs N]`, which trains a small network on the shipped digits
//! data with the CPU device. Exit status: 0 success, 1 an error while running, 2 bad usage.

use std::process::ExitCode;

const USAGE: &str = "usage: ms demo [DIGITS_CSV] [--epochs N] [--hidden N]
  Trains a 64-h-10 perceptron on the UCI digits (default: samples/data/digits.csv)
  with every step run as a primitive on the CPU device.
The MindScript language (scripts, REPL) arrives in a later release.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok((path, epochs, hidden)) => run(&path, epochs, hidden),
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<(String, usize, usize), String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("demo") => {}
        Some("--help" | "-h") | None => return Err("no command given".into()),
        Some(other) => return Err(format!("unknown command `{other}`")),
    }
    let (mut path, mut epochs, mut hidden) =
        ("samples/data/digits.csv".to_string(), 20usize, 64usize);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name} takes a positive whole number, not `{v}`"))
        };
        match a.as_str() {
            "--epochs" => epochs = number("--epochs")?,
            "--hidden" => hidden = number("--hidden")?,
            s if s.starts_with("--") => return Err(format!("unknown flag `{s}`")),
            s => path = s.to_string(),
        }
    }
    Ok((path, epochs, hidden))
}

fn run(path: &str, epochs: usize, hidden: usize) -> ExitCode {
    let started = std::time::Instant::now();
    let result = interpreter::demo::load_digits(path).and_then(|data| {
        interpreter::demo::train(&data, epochs, hidden, |line| println!("{line}"))
    });
    match result {
        Ok(report) => {
            println!(
                "test accuracy {:.1}%  ({:.2} s)",
                100.0 * report.test_accuracy,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
