//! `:help NAME` for builtins: a one-line description of every builtin, and the usage of
//! the higher-order ones (which have no [`signature`], since the checker's walker types
//! them).
//!
//! A test checks that every name in [`lang::check::builtins::names`] has a line here, so a
//! new builtin cannot ship without one.

use lang::check::builtins::{Signature, signature};

/// One line per builtin, sorted by name.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("abs", "absolute value, elementwise"),
    (
        "all",
        "true when every element is true (over all axes or along `axis`)",
    ),
    (
        "allclose",
        "true when a and b are equal within NumPy's tolerance rule, over structures too",
    ),
    (
        "any",
        "true when some element is true (over all axes or along `axis`)",
    ),
    (
        "arange",
        "evenly spaced values in [start, stop): `arange(n)` or `arange(start, stop, step)`",
    ),
    (
        "arg",
        "the script argument `--name VALUE`, parsed to the type of `default`",
    ),
    (
        "argmax",
        "index of the largest element (flattened, or along `axis`)",
    ),
    (
        "argmin",
        "index of the smallest element (flattened, or along `axis`)",
    ),
    (
        "assert",
        "stops with an error at this call when `cond` is false",
    ),
    (
        "attention",
        "scaled dot-product attention softmax(q k^T / sqrt(d)) v, with an optional mask",
    ),
    ("avg_pool2d", "2-d average pooling over NCHW input"),
    (
        "batch_norm",
        "normalises over the batch and spatial axes, with optional scale and shift",
    ),
    (
        "batches",
        "iterates over slices of axis 0 of a tensor, tuple or record, `size` rows at a time",
    ),
    (
        "binary_cross_entropy_with_logits",
        "mean binary cross-entropy of logits against 0/1 targets",
    ),
    ("bool", "casts to bool (nonzero is true)"),
    ("broadcast_to", "broadcasts x to `shape` (NumPy rules)"),
    ("ceil", "rounds up to an integer value, elementwise"),
    (
        "chr",
        "the string of the Unicode code points `codes` (an integer scalar or vector); `ord` is its inverse",
    ),
    ("clip", "limits every element to [lo, hi]"),
    (
        "concat",
        "joins a tuple of tensors along an existing axis (default 0)",
    ),
    ("conv2d", "2-d convolution of NCHW input with OIHW weights"),
    ("cos", "cosine, elementwise"),
    (
        "cross_entropy",
        "mean cross-entropy of logits against i64 class labels",
    ),
    ("device", "the name of the device a tensor lives on"),
    ("devices", "the names of the devices of the mesh"),
    (
        "dot",
        "inner product of two vectors; otherwise the matrix product",
    ),
    (
        "dropout",
        "zeroes elements with probability p and rescales the rest (when training)",
    ),
    ("dtype", "the dtype of a tensor, as a string"),
    (
        "einsum",
        "Einstein summation over its operands: `einsum(\"ij,jk->ik\", a, b)`",
    ),
    ("embedding", "rows of a table picked by integer ids"),
    ("erf", "the error function, elementwise"),
    ("exp", "e to the power of x, elementwise"),
    ("expand_dims", "inserts an axis of size 1 at `axis`"),
    ("expm1", "exp(x) - 1, accurate near zero, elementwise"),
    (
        "export_mir",
        "writes f staged at example arguments as a MindScript model file, .msir (docs/export.md)",
    ),
    (
        "export_onnx",
        "writes f staged at example arguments as an ONNX model (docs/export.md)",
    ),
    ("eye", "the identity matrix (n rows, m columns)"),
    ("f32", "casts to f32"),
    ("f64", "casts to f64"),
    ("flatten", "reshapes to one axis"),
    ("floor", "rounds down to an integer value, elementwise"),
    ("floor_div", "division rounded down; integers stay integers"),
    ("full", "a tensor of `shape` filled with `value`"),
    (
        "gather",
        "picks entries along `axis` (default 0) by an i64 index tensor",
    ),
    ("gelu", "the exact (erf) GELU activation"),
    (
        "grad",
        "the gradient function of a scalar function, with respect to its first argument or `wrt`",
    ),
    (
        "hessian",
        "the function computing the matrix of second derivatives of a scalar function",
    ),
    ("i32", "casts to i32"),
    ("i64", "casts to i64"),
    (
        "isfinite",
        "true where an element is neither infinite nor NaN",
    ),
    ("isnan", "true where an element is NaN"),
    (
        "jit",
        "the function staged into the graph IR: same results, compiled once per signature",
    ),
    (
        "jvp",
        "forward mode: the value and directional derivative of f at the primals",
    ),
    (
        "layer_norm",
        "normalises over the last axis, with optional scale and shift",
    ),
    (
        "leaves",
        "the tensors of a tuple or record as one flat tuple (record fields sorted)",
    ),
    (
        "len",
        "the size of axis 0 (or the number of elements of a tuple)",
    ),
    (
        "linspace",
        "`num` evenly spaced values from start to stop, both included",
    ),
    (
        "load",
        "reads a safetensors checkpoint: the tuples and records `save` wrote (docs/data.md)",
    ),
    (
        "load_csv",
        "reads a CSV file of numbers into a 2-d tensor; finds a header line; `columns:` picks columns by name",
    ),
    (
        "load_idx",
        "reads an MNIST-style IDX file, gzipped or raw: images as f32, labels as i64",
    ),
    (
        "load_model",
        "a model saved by `ms export --mir` (.msir), called like the function it was",
    ),
    (
        "load_npy",
        "reads a NumPy .npy file (f32, f64, i32, i64 or bool, C order)",
    ),
    (
        "load_text",
        "reads a UTF-8 text file into a string (`ord` turns it into code points)",
    ),
    ("log", "natural logarithm, elementwise"),
    ("log1p", "log(1 + x), accurate near zero, elementwise"),
    (
        "log_histogram",
        "logs a 30-bucket histogram of x's elements at `step` (TensorBoard event file in runs/)",
    ),
    (
        "log_scalar",
        "logs a number under `tag` at `step` (TensorBoard event file in runs/; `ms report` draws it)",
    ),
    (
        "log_softmax",
        "log of softmax along `axis` (default -1), computed stably",
    ),
    (
        "log_text",
        "logs a string (Markdown in TensorBoard's text tab) under `tag` at `step`",
    ),
    ("logical_and", "elementwise and of bool tensors"),
    ("logical_not", "elementwise not of a bool tensor"),
    ("logical_or", "elementwise or of bool tensors"),
    (
        "logsumexp",
        "log of the sum of exponentials, computed stably (default axis -1)",
    ),
    (
        "map",
        "applies a function to every leaf of a tuple or record",
    ),
    (
        "map2",
        "applies a two-argument function to matching leaves of two structures",
    ),
    (
        "matmul",
        "matrix product with NumPy batching (the `@` operator)",
    ),
    ("max", "the largest element (over all axes or along `axis`)"),
    ("max_pool2d", "2-d max pooling over NCHW input"),
    ("maximum", "the larger of x and y, elementwise"),
    (
        "mean",
        "the mean of the elements (over all axes or along `axis`)",
    ),
    (
        "min",
        "the smallest element (over all axes or along `axis`)",
    ),
    ("minimum", "the smaller of x and y, elementwise"),
    ("mse", "mean squared error over all elements"),
    ("neg", "negation, elementwise"),
    (
        "nll",
        "mean negative log-likelihood of log-probabilities at i64 labels",
    ),
    ("one_hot", "one-hot rows of length n for integer labels"),
    ("ones", "a tensor of ones of `shape`"),
    (
        "ones_like",
        "ones with the shape (and dtype, unless given) of x",
    ),
    (
        "ord",
        "the Unicode code points of a string, as an i64 vector; `chr` is its inverse",
    ),
    ("outer", "outer product of two flattened tensors"),
    (
        "pad",
        "pads each axis by (before, after) elements of `value`",
    ),
    (
        "print",
        "prints its arguments on one line, separated by spaces",
    ),
    (
        "prod",
        "the product of the elements (over all axes or along `axis`)",
    ),
    (
        "progress",
        "the items of a range, tensor or batches, with a progress bar (rate, ETA) when `for` runs over it on a terminal",
    ),
    (
        "rand",
        "uniform random numbers in [0, 1) from the session's stream",
    ),
    ("randint", "uniform random integers in [low, high)"),
    (
        "randn",
        "standard normal random numbers from the session's stream",
    ),
    ("relu", "max(x, 0), elementwise"),
    ("reshape", "the same elements in a new shape"),
    ("round", "rounds to the nearest integer value, half to even"),
    ("rsqrt", "1 / sqrt(x), elementwise"),
    (
        "save",
        "writes tensors, tuples and records as a safetensors checkpoint, atomically",
    ),
    ("save_npy", "writes a tensor as a NumPy .npy file"),
    ("seed", "restarts the random stream from seed n"),
    ("shape", "the shape of a tensor, as a tuple of ints"),
    (
        "shard",
        "places a tensor on the device mesh with the given layout",
    ),
    (
        "shuffle",
        "the rows (axis 0) of a tensor, tuple or record in random order",
    ),
    ("sigmoid", "1 / (1 + exp(-x)), elementwise"),
    ("sign", "-1, 0 or 1 by the sign of each element"),
    ("silu", "x * sigmoid(x), elementwise"),
    ("sin", "sine, elementwise"),
    (
        "softmax",
        "exponentials normalised to sum to 1 along `axis` (default -1)",
    ),
    ("softplus", "log(1 + exp(x)), elementwise, computed stably"),
    (
        "split",
        "n equal pieces along `axis` (default 0), as a tuple",
    ),
    (
        "split_train_test",
        "splits rows into (train, test), `test` being the test fraction",
    ),
    ("sqrt", "square root, elementwise"),
    ("squeeze", "drops axes of size 1 (all of them, or `axis`)"),
    (
        "stack",
        "joins a tuple of equal-shaped tensors along a new axis (default 0)",
    ),
    (
        "std",
        "standard deviation (ddof 0), over all axes or along `axis`",
    ),
    ("stop_gradient", "x, but gradients do not flow through it"),
    (
        "sum",
        "the sum of the elements (over all axes or along `axis`)",
    ),
    (
        "take",
        "picks elements of the flattened x (or along `axis`) by an i64 index tensor",
    ),
    ("tanh", "hyperbolic tangent, elementwise"),
    (
        "time",
        "wall-clock seconds as an f64 scalar, after pending device work",
    ),
    ("to", "a copy of x on the named device"),
    (
        "transpose",
        "permutes the axes (reverses them when `perm` is not given)",
    ),
    (
        "value_and_grad",
        "like grad, but the function returns (value, gradient)",
    ),
    ("var", "variance (ddof 0), over all axes or along `axis`"),
    (
        "vjp",
        "reverse mode: (f(xs), pullback) where pullback maps an output cotangent to input ones",
    ),
    (
        "where",
        "picks x where cond is true and y elsewhere, elementwise",
    ),
    ("zeros", "a tensor of zeros of `shape`"),
    (
        "zeros_like",
        "zeros with the shape (and dtype, unless given) of x",
    ),
];

/// How the builtins without a [`signature`] (the higher-order ones) are called.
const HIGHER_ORDER_USAGE: &[(&str, &str)] = &[
    ("grad", "grad(f, wrt?)"),
    ("hessian", "hessian(f, wrt?)"),
    ("jit", "jit(f)"),
    ("jvp", "jvp(f, primals, tangents)"),
    ("map", "map(f, structure)"),
    ("map2", "map2(f, a, b)"),
    ("value_and_grad", "value_and_grad(f, wrt?)"),
    ("vjp", "vjp(f, x, ...)"),
];

/// The one-line description of the builtin `name`.
pub fn description(name: &str) -> Option<&'static str> {
    DESCRIPTIONS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| DESCRIPTIONS[i].1)
}

/// How the builtin `name` is called: `sum(x, axis?, keepdims?)`, optional parameters
/// marked with `?`, `...` where more positional arguments are accepted.
pub fn usage(name: &str) -> Option<String> {
    if let Some(sig) = signature(name) {
        return Some(format_signature(name, &sig));
    }
    HIGHER_ORDER_USAGE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| (*u).to_string())
}

fn format_signature(name: &str, sig: &Signature) -> String {
    let mut params: Vec<String> = sig
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i < sig.required {
                (*p).to_string()
            } else {
                format!("{p}?")
            }
        })
        .collect();
    if sig.variadic {
        params.push("...".to_string());
    }
    format!("{name}({})", params.join(", "))
}

/// The `:help NAME` text of a builtin, or `None` when `name` is not one.
pub fn builtin_help(name: &str) -> Option<String> {
    if !lang::check::builtins::names().contains(&name) {
        return None;
    }
    let usage = usage(name)?;
    let description = description(name)?;
    Some(format!("{usage}    (builtin)\n  {description}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_has_a_description_and_a_usage() {
        let names = lang::check::builtins::names();
        for name in names {
            assert!(description(name).is_some(), "no description for `{name}`");
            assert!(usage(name).is_some(), "no usage for `{name}`");
        }
        // And nothing here describes a name that is not a builtin.
        for (name, _) in DESCRIPTIONS {
            assert!(
                names.contains(name),
                "`{name}` is described but not a builtin"
            );
        }
    }

    #[test]
    fn descriptions_are_sorted_and_single_lines() {
        for pair in DESCRIPTIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (name, text) in DESCRIPTIONS {
            assert!(!text.contains('\n') && !text.is_empty(), "{name}");
        }
    }

    #[test]
    fn usage_marks_optional_parameters() {
        assert_eq!(usage("sum").as_deref(), Some("sum(x, axis?, keepdims?)"));
        assert_eq!(usage("full").as_deref(), Some("full(shape, value, dtype?)"));
        assert_eq!(usage("grad").as_deref(), Some("grad(f, wrt?)"));
        assert!(usage("no_such_builtin").is_none());
        let help = builtin_help("softmax").expect("softmax is a builtin");
        assert!(help.starts_with("softmax(x, axis?)"), "{help}");
        assert!(help.contains("default -1"), "{help}");
    }
}
