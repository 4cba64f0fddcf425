"""The course's benchmarks: CIFAR-10 warm-up, transfer, leave-style-out generalisation, solving speed."""
