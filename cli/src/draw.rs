//! Drawing on RGB images: the runtime's [`edgetpu::vision::draw`] helpers.

pub use edgetpu::vision::draw::*;
