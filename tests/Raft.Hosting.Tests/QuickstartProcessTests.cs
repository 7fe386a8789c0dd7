using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Raft.Hosting.Tests;

/// <summary>The quickstart sample's own program, as three processes: its appsettings.json, only the ports and the data directory overridden on the command line.</summary>
[Collection("hosts")]
public sealed partial class QuickstartProcessTests(ITestOutputHelper output)
{
    [GeneratedRegex(@"^Node (\d) \((\w+)\): counter is (\d+)$")]
    private static partial Regex CounterLine();

    [Fact]
    public async Task Three_quickstart_processes_replicate_the_counter()
    {
        var ports = TestHosts.FreePorts(3);
        var root = TestHosts.TempDirectory();
        var lines = new ConcurrentQueue<string>();
        var processes = new List<Process>();
        try
        {
            for (int id = 1; id <= 3; id++)
            {
                var start = new ProcessStartInfo("dotnet")
                {
                    WorkingDirectory = root,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    UseShellExecute = false,
                };
                start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "HostingQuickstart.dll"));
                start.ArgumentList.Add($"--Raft:NodeId={id}");
                for (int m = 1; m <= 3; m++)
                    start.ArgumentList.Add($"--Raft:Members:{m}=127.0.0.1:{ports[m - 1]}");
                start.ArgumentList.Add($"--contentRoot={AppContext.BaseDirectory}");
                start.ArgumentList.Add("--Logging:LogLevel:Default=Warning");
                var process = Process.Start(start)!;
                processes.Add(process);
                int node = id;
                process.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue(e.Data); };
                process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lines.Enqueue($"[{node} stderr] {e.Data}"); };
                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
            }

            // Every node gets a write through (the followers forward), and the totals they see keep growing past 3.
            var counters = () => lines.Select(l => CounterLine().Match(l)).Where(m => m.Success)
                .Select(m => (Node: int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), Role: m.Groups[2].Value, Total: long.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture))).ToList();
            await TestHosts.Eventually(() => counters().Select(c => c.Node).Distinct().Count() == 3 && counters().Max(c => c.Total) >= 6, TimeSpan.FromSeconds(45), "every quickstart node wrote, the counter passed 6");
            var seen = counters();
            Assert.Contains(seen, c => c.Role == "Leader");
            Assert.Contains(seen, c => c.Role == "Follower");
            Assert.Equal(seen.Count, seen.Select(c => c.Total).Distinct().Count()); // each increment got its own total: one shared counter
            Assert.All(processes, p => Assert.False(p.HasExited));
            Assert.All(Enumerable.Range(1, 3), id => Assert.True(Directory.EnumerateFiles(Path.Combine(root, "data", $"node-{id}", "log")).Any()));
        }
        finally
        {
            foreach (var process in processes)
            {
                if (!process.HasExited)
                    process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                process.Dispose();
            }
            foreach (var line in lines)
                output.WriteLine(line);
            Directory.Delete(root, recursive: true);
        }
    }
}
