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
            let value = param.val().detach();
            let n = value.shape().num_elements();
            self.0.push(value.reshape([n]).inner());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
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
