//! `ir::graph::generalize`: two stagings of one function at different sizes of a symbolic
//! dim become one graph general in it, or the difference that prevents it is named.

use std::sync::Arc;

use ir::graph::{PrintOptions, SymSize, generalize, parse, print};

/// A graph over `x: f32[{n}, 3]` that reshapes, broadcasts and sums over the batch.
fn batch_graph(n: usize, fill: &str) -> String {
    format!(
        "graph @f(%0: f32[{n}, 3], %1: f32[3]) -> (f32[], f32[{n}, 3]) {{\n\
         \x20 %2: f32[{n}, 3] = broadcast %1 {{shape: [{n}, 3]}}\n\
         \x20 %3: f32[{n}, 3] = mul %0, %2\n\
         \x20 %4: f32[] = sum %3 {{axes: [0, 1], keepdims: false}}\n\
         \x20 %5: f32[{n}, 3] = full {{shape: [{n}, 3], dtype: f32, value: {fill}}}\n\
         \x20 %6: f32[{n}, 3] = add %3, %5\n\
         \x20 yield %4, %6\n\
         }}\n"
    )
}

fn b(a: usize, b: usize) -> Vec<SymSize> {
    vec![SymSize {
        name: Arc::from("B"),
        a,
        b,
    }]
}

#[test]
fn sizes_of_a_symbolic_dim_become_the_dim() {
    let g2 = parse(&batch_graph(2, "1.0")).expect("parses");
    let g5 = parse(&batch_graph(5, "1.0")).expect("parses");
    let g = generalize(&g2, &g5, &b(2, 5)).expect("generalizes");
    let want = parse(&batch_graph(0, "1.0").replace("0, 3", "B, 3")).expect("parses");
    assert_eq!(
        print(&g, PrintOptions::default()),
        print(&want, PrintOptions::default())
    );
    ir::verify(&g).expect("verifies");
}

#[test]
fn what_depends_on_the_size_is_named() {
    let g2 = parse(&batch_graph(2, "1.0")).expect("parses");
    // A constant folded from the size (`1 / B`) differs.
    let g5 = parse(&batch_graph(5, "0.2")).expect("parses");
    let e = generalize(&g2, &g5, &b(2, 5)).expect_err("a constant differs");
    assert!(
        e.contains("node 3 (full)") && e.contains("value: 0.2"),
        "{e}"
    );
    // Sizes no symbolic dim explains.
    let g5 = parse(&batch_graph(5, "1.0")).expect("parses");
    let e = generalize(&g2, &g5, &b(2, 6)).expect_err("5 is not B's size");
    assert!(e.contains("no symbolic dim explains"), "{e}");
    // Graphs of different structure.
    let other = parse(
        "graph @f(%0: f32[5, 3], %1: f32[3]) -> (f32[]) {\n  %2: f32[] = sum %0 {axes: [0, 1], keepdims: false}\n  yield %2\n}\n",
    )
    .expect("parses");
    assert!(generalize(&g2, &other, &b(2, 5)).is_err());
}
