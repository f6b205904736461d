//! The device builtins (`device devices to`; LANGUAGE.md §8).
//!
//! `to(x, "cpu")` and `to(x, "cuda:N")` copy through the host (nothing for a tensor already
//! there). Where CUDA cannot be used, a CUDA device name is an error that says why
//! (`devices::cuda::open`), never a silent fall back to the CPU. `shard` is the
//! auto-parallel issue's and stays unavailable.

use std::sync::Arc;

use devices::{CpuDevice, Device, DeviceId, Tensor};
use lang::Span;

use super::Call;
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{TensorVal, Value};

/// The device a name names: `cpu`, `cuda` (ordinal 0) or `cuda:N`.
fn parse(name: &str, span: Span) -> R<DeviceId> {
    let unknown = || {
        errors::bad_value(
            format!("`{name}` is not a device name: use \"cpu\", \"cuda\" or \"cuda:N\""),
            span,
        )
    };
    match name.trim() {
        "cpu" | "cpu:0" => Ok(DeviceId::Cpu),
        "cuda" => Ok(DeviceId::Cuda(0)),
        other => match other.strip_prefix("cuda:") {
            Some(n) => n.parse::<u32>().map(DeviceId::Cuda).map_err(|_| unknown()),
            None => Err(unknown()),
        },
    }
}

/// The device object for `id`, opening it if the session does not compute there.
fn open(ev: &Eval<'_>, id: DeviceId, span: Span) -> R<Arc<dyn Device>> {
    if ev.st.device.id() == id {
        return Ok(ev.st.device.clone());
    }
    match id {
        DeviceId::Cpu => Ok(Arc::new(CpuDevice::new())),
        // The error names the device and why it is missing.
        DeviceId::Cuda(n) => devices::cuda::open(n)
            .map_err(|e| errors::bad_value(format!("cannot move a value: {e}"), span)),
        // `parse` never names it: staged values are not a place a user can move data to.
        DeviceId::Staged => Err(errors::bad_value(
            "cannot move a value to a staged graph".to_string(),
            span,
        )),
    }
}

/// `to(x, device)`: `x` with every tensor in it on `device`.
pub(super) fn to(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let name = c.string(1)?.unwrap_or("");
    let id = parse(name, c.span(1))?;
    let dev = open(ev, id, c.span(1))?;
    move_value(ev, &dev, c.req(0)?, c.span)
}

/// `v` with its tensors on `dev`; other values are where they are.
fn move_value(ev: &Eval<'_>, dev: &Arc<dyn Device>, v: &Value, span: Span) -> R<Value> {
    Ok(match v {
        Value::Tensor(t) => Value::Tensor(TensorVal {
            t: move_tensor(ev, dev, &t.t, span)?,
            ..t.clone()
        }),
        Value::Tuple(items) => Value::Tuple(
            items
                .iter()
                .map(|x| move_value(ev, dev, x, span))
                .collect::<R<Vec<_>>>()?
                .into(),
        ),
        Value::Record(fields) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, x) in fields.iter() {
                out.insert(k.clone(), move_value(ev, dev, x, span)?);
            }
            Value::Record(Arc::new(out))
        }
        other => other.clone(),
    })
}

/// One tensor on `dev`: itself when it is already there, else a copy through the host.
fn move_tensor(ev: &Eval<'_>, dev: &Arc<dyn Device>, t: &Tensor, span: Span) -> R<Tensor> {
    if t.device() == dev.id() {
        return Ok(t.clone());
    }
    let host = t.to_host().map_err(|e| ev.device_error(e, span))?;
    let data = CpuDevice::new()
        .download(&host)
        .map_err(|e| ev.device_error(e, span))?;
    dev.upload(data, t.shape())
        .map_err(|e| ev.device_error(e, span))
}

/// The device of the first tensor in `v`, if it holds one.
fn first_device(v: &Value) -> Option<DeviceId> {
    match v {
        Value::Tensor(t) => Some(t.t.device()),
        Value::Tuple(items) => items.iter().find_map(first_device),
        Value::Record(fields) => fields.values().find_map(first_device),
        _ => None,
    }
}

/// `device(x)`: where `x`'s tensors live (the session's device for a value without any).
pub(super) fn device(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let id = first_device(c.req(0)?).unwrap_or_else(|| ev.st.device.id());
    Ok(Value::Str(id.to_string().into()))
}

/// `devices()`: the devices present, the session's first; always the CPU, then the CUDA
/// devices this machine has.
pub(super) fn devices(ev: &mut Eval<'_>, _c: &Call) -> R<Value> {
    let session = ev.st.device.id();
    let mut ids = vec![session];
    for id in std::iter::once(DeviceId::Cpu).chain(devices::cuda::devices()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let names = ids
        .into_iter()
        .map(|id| Value::Str(id.to_string().into()))
        .collect::<Vec<_>>();
    Ok(Value::Tuple(names.into()))
}

/// `shard(x, strategy)`: a hint for `@jit(parallel: "semi_auto")` (MindSpore's `shard`):
/// split axis `i` of `x` into `strategy[i]` pieces over the mesh. Inside a staged function
/// it records the hint on `x`'s value for the partitioner; the value is `x` itself, so
/// eagerly (and in any function that is not semi-automatically parallel) it changes
/// nothing. The strategy is checked everywhere: one positive count per axis.
pub(super) fn shard(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?.clone();
    let strategy = super::int_list(ev, c.req(1)?, c.span(1))?;
    if strategy.len() != x.rank() || strategy.iter().any(|&k| k < 1) {
        return Err(errors::bad_value(
            format!(
                "`shard` needs one positive piece count per axis of its {}-dimensional tensor, found {strategy:?}",
                x.rank()
            ),
            c.span(1),
        ));
    }
    if let Some((tag, _)) = x.t.staged_id()
        && ev.staging()
    {
        let strategy: Vec<usize> = strategy.iter().map(|&k| k as usize).collect();
        let span = c.span;
        ev.with_stager(span, |s| {
            if s.tag == tag {
                let v = s.value_of(&x.t, span)?;
                s.hints.push((v, strategy, span));
            }
            Ok(())
        })?;
    }
    Ok(Value::Tensor(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        let s = Span::new(0, 0);
        assert!(matches!(parse("cpu", s), Ok(DeviceId::Cpu)));
        assert!(matches!(parse("cuda", s), Ok(DeviceId::Cuda(0))));
        assert!(matches!(parse("cuda:3", s), Ok(DeviceId::Cuda(3))));
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", ""] {
            assert!(parse(bad, s).is_err(), "{bad}");
        }
    }
}
