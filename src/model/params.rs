//! Every float parameter of a module as one flat list, in the module's (deterministic) visiting
//! order: what the optimiser, the EMA and the checkpoints work on. Parameters that are not trained
//! (permutation matrices, signs, ActNorm's init flag) are in the list too, so the lists of two
//! modules of the same architecture line up; they simply never get a gradient.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};

use crate::tensor_ops::replace_value;

/// Each float parameter's current value, flattened to 1-D (without autodiff tracking).
pub fn flat_params<M: Module>(module: &M) -> Vec<Tensor<1>> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(flattened(param.val()));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// A parameter's value flattened to 1-D, without autodiff tracking.
fn flattened<const D: usize>(value: Tensor<D>) -> Tensor<1> {
    let n = value.shape().num_elements();
    value.detach().reshape([n]).inner()
}

/// [`flat_params`] moved out of `module` instead of shared with it: each float parameter's value,
/// flattened, and `module` with each one replaced by a one-element placeholder broadcast to its
/// shape (identity and trainability kept), for [`with_flat_params`] to refill. A value nothing
/// else holds can then be rewritten in place instead of copied first (the optimiser's update).
pub fn take_flat_params<M: Module>(module: M) -> (M, Vec<Tensor<1>>) {
    struct Take(Vec<Tensor<1>>);
    impl ModuleMapper for Take {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|value| {
                let (shape, device) = (value.dims(), value.device());
                let trained = value.is_require_grad();
                self.0.push(flattened(value));
                Tensor::<D>::zeros([1; D], &device)
                    .expand(shape)
                    .set_require_grad(trained)
            })
        }
    }
    let mut take = Take(Vec::new());
    let module = module.map(&mut take);
    (module, take.0)
}

/// Each float parameter's gradient, flattened (`None` for parameters that are not trained).
pub fn flat_grads<M: Module>(module: &M, grads: &Gradients) -> Vec<Option<Tensor<1>>> {
    struct Collect<'a>(Vec<Option<Tensor<1>>>, &'a Gradients);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = param.val().grad(self.1).map(|g| {
                let n = g.shape().num_elements();
                g.reshape([n])
            });
            self.0.push(grad);
        }
    }
    let mut collect = Collect(Vec::new(), grads);
    module.visit(&mut collect);
    collect.0
}

/// `module` with each float parameter set to the matching entry of `values` (reshaped back), or
/// left as it is where the entry is `None`. Identities and trainability are kept.
pub fn with_flat_params<M: Module>(module: M, values: Vec<Option<Tensor<1>>>) -> M {
    struct Assign(std::vec::IntoIter<Option<Tensor<1>>>);
    impl ModuleMapper for Assign {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            match self.0.next().expect("one value per float parameter") {
                Some(value) => {
                    let shape = param.dims();
                    let device = param.device();
                    let value = value.reshape(shape);
                    let value = if device.is_autodiff() {
                        value.autodiff()
                    } else {
                        value
                    };
                    replace_value(param, value)
                }
                None => param,
            }
        }
    }
    let count = values.len();
    let mut assign = Assign(values.into_iter());
    let module = module.map(&mut assign);
    assert_eq!(
        assign.0.len(),
        0,
        "{count} values for fewer float parameters"
    );
    module
}
