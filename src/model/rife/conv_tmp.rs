//! Convolutions through candle's own kernels (placeholder for the fast path).

use candle_core::{DType, Tensor};

pub(crate) struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
    transpose: bool,
}

impl Conv {
    pub fn conv2d(weight: &Tensor, bias: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Self> {
        Ok(Self { weight: weight.to_dtype(DType::F32)?, bias: bias.to_dtype(DType::F32)?, stride, padding, transpose: false })
    }
    pub fn conv_transpose2d(weight: &Tensor, bias: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Self> {
        Ok(Self { weight: weight.to_dtype(DType::F32)?, bias: bias.to_dtype(DType::F32)?, stride, padding, transpose: true })
    }
    fn raw(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = if self.transpose {
            x.conv_transpose2d(&self.weight, self.padding, 0, self.stride, 1)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
    pub fn forward(&self, x: &Tensor, act: Option<f32>) -> candle_core::Result<Tensor> {
        let y = self.raw(x)?;
        match act {
            Some(s) => leaky(&y, s),
            None => Ok(y),
        }
    }
    pub fn forward_residual(&self, x: &Tensor, beta: &Tensor, slope: f32) -> candle_core::Result<Tensor> {
        leaky(&(self.raw(x)?.broadcast_mul(beta)? + x)?, slope)
    }
}

fn leaky(x: &Tensor, s: f32) -> candle_core::Result<Tensor> {
    x.maximum(&(x * s as f64)?)
}
