//! Front-end speed: checking a generated 10,000-line script, and one REPL line.
//!
//! `cargo bench -p ms-tests --bench frontend`. Targets (issue 3): ≤ 200 ms for the script,
//! ≤ 1 ms for a REPL line, release build.

use criterion::{Criterion, criterion_group, criterion_main};
use lang::check::Checker;
use ms_tests::inputs::Rng;
use ms_tests::programs::valid_program;

fn script(c: &mut Criterion) {
    let src = valid_program(&mut Rng::new(7), 10_000);
    let lines = src.lines().count();
    let mut group = c.benchmark_group("frontend");
    group.sample_size(20);
    group.bench_function(format!("parse_{lines}_lines"), |b| {
        b.iter(|| lang::syntax::parse(std::hint::black_box(&src)))
    });
    group.bench_function(format!("parse_check_{lines}_lines"), |b| {
        b.iter(|| {
            let (program, mut diags) = lang::syntax::parse(&src);
            diags.extend(Checker::new().check_program(&src, &program));
            assert!(
                diags.is_empty(),
                "the generated script must check clean: {diags:?}"
            );
            diags
        })
    });
    group.finish();
}

fn repl_line(c: &mut Criterion) {
    let mut checker = Checker::new();
    let setup = "let x = randn([64, 784])\nlet w1 = randn([784, 128])\nlet b1 = zeros([128])\n\
                 fn layer(x, w, b) { relu(x @ w + b) }\n";
    let (program, diags) = lang::syntax::parse(setup);
    assert!(diags.is_empty() && checker.check_program(setup, &program).is_empty());
    let line = "let h = softmax(layer(x, w1, b1), axis: -1).sum(axis: 1)";
    c.bench_function("frontend/repl_line", |b| {
        b.iter(|| {
            let (program, mut diags) = lang::syntax::parse(line);
            diags.extend(checker.check_program(line, &program));
            diags
        })
    });
}

criterion_group!(benches, script, repl_line);
criterion_main!(benches);
