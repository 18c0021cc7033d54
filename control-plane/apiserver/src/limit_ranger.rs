//! The LimitRanger admission plugin (kube's `plugin/pkg/admission/limitranger`); so far the
//! quantities LimitRanges are written in.

pub mod quantity;
