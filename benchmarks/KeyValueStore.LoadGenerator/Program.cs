using System.Globalization;
using Raft.Benchmarks.LoadGenerator;

// Service-level load generator for the sample key-value service: three node processes (or --urls),
// closed-loop HTTP clients over all nodes, then ops/s and latency percentiles. See README.md.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

LoadOptions options;
try
{
    options = LoadOptions.Parse(args);
}
catch (FormatException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    Console.Error.WriteLine();
    Console.Error.WriteLine(LoadOptions.Usage);
    return 2;
}
if (options.ShowHelp)
{
    Console.WriteLine(LoadOptions.Usage);
    return 0;
}
return await LoadRun.RunAsync(options, args);
