using BenchmarkDotNet.Running;

// Runs the BenchmarkDotNet suites in this assembly; pass --filter '*Name*' to pick some.
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
