//! The planner's speed (issue 9): `ir::parallel::search` on graphs of about 1,000 and
//! 10,000 nodes over 8 devices, release build, one thread.
//!
//! `cargo bench -p ms-tests --bench planner`. Targets: ≤ 1 s for 1,000 nodes, ≤ 10 s for
//! 10,000. The graph is a deep MLP's forward pass and loss, written as IR text: per layer
//! a product with its weight, a bias add and a relu (three nodes, two parameter inputs),
//! the batch an input split along its rows.

use criterion::{Criterion, criterion_group, criterion_main};
use ir::parallel::{Mesh, Profile, Role, search};

/// A forward pass of `layers` layers of width `width` on a batch of `batch` rows, then the
/// sum of the last activation: `3 * layers + 1` nodes.
fn deep_mlp(layers: usize, batch: usize, width: usize) -> (ir::Graph, Vec<Role>) {
    let mut text = format!("graph @deep(%x: f32[{batch}, {width}]");
    for l in 0..layers {
        text.push_str(&format!(
            ", %w{l}: f32[{width}, {width}], %b{l}: f32[{width}]"
        ));
    }
    text.push_str(") -> (f32[]) {\n");
    let mut h = "%x".to_string();
    for l in 0..layers {
        text.push_str(&format!(
            "  %m{l}: f32[{batch}, {width}] = matmul {h}, %w{l}\n  %a{l}: f32[{batch}, {width}] = add %m{l}, %b{l}\n  %r{l}: f32[{batch}, {width}] = relu %a{l}\n"
        ));
        h = format!("%r{l}");
    }
    text.push_str(&format!(
        "  %s: f32[] = sum {h} {{axes: [0, 1], keepdims: false}}\n  yield %s\n}}\n"
    ));
    let g = ir::graph::parse(&text).expect("the generated graph parses");
    let mut roles = vec![Role::Batch];
    roles.extend(std::iter::repeat_n(Role::Param, 2 * layers));
    (g, roles)
}

fn planner(c: &mut Criterion) {
    let profile = Profile::named("h100").expect("profile");
    let mesh = Mesh::line(8);
    let mut group = c.benchmark_group("planner");
    group.sample_size(10);
    for layers in [333, 3333] {
        let (g, roles) = deep_mlp(layers, 256, 512);
        let nodes = g.block(g.body()).nodes.len();
        let data = vec![ir::parallel::Layout::split(2, 0, 0)];
        group.bench_function(format!("price_{nodes}_nodes_8_devices"), |b| {
            b.iter(|| {
                let p = ir::parallel::partition_first(
                    &g,
                    &mesh,
                    &data,
                    &[],
                    &ir::parallel::BucketPolicy::for_profile(&profile),
                )
                .expect("partitions");
                ir::parallel::estimate(&p, &profile)
            })
        });
        group.bench_function(format!("search_{nodes}_nodes_8_devices"), |b| {
            b.iter(|| search(&g, &mesh, &roles, &profile, None).expect("a plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, planner);
criterion_main!(benches);
