//! The conformance suite, expanded for every backend.

mod cpu {
    latentlab_tensor::conformance_tests!(Some(latentlab_tensor::Cpu::new()));
}

mod cpu_sequential {
    latentlab_tensor::conformance_tests!(Some(latentlab_tensor::Cpu::sequential()));
}

mod wgpu {
    latentlab_tensor::conformance_tests!(latentlab_tensor::conformance::test_gpu());
}
