using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>
/// A fact that needs headless Chromium at <see cref="ChromiumPath"/>. When it is missing the test is
/// skipped, unless the environment variable <c>RAFT_REQUIRE_CHROMIUM=1</c>, in which case it runs
/// and fails with a message saying what to install.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string ChromiumPath = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!IsInstalled && !IsRequired)
            Skip = $"{ChromiumPath} is not installed (Debian: apt-get install chromium). Set RAFT_REQUIRE_CHROMIUM=1 to make its absence a failure.";
    }

    public static bool IsInstalled => File.Exists(ChromiumPath);

    public static bool IsRequired => Environment.GetEnvironmentVariable("RAFT_REQUIRE_CHROMIUM") == "1";
}

/// <summary>The status page in a real browser: its script polls /cluster and renders every node and the leader.</summary>
[Collection(ClusterCollection.Name)]
public sealed partial class ChromiumPageTests(ClusterFixture fixture)
{
    [ChromiumFact]
    public async Task The_page_shows_three_nodes_and_the_leader_in_headless_chromium()
    {
        Assert.True(ChromiumFactAttribute.IsInstalled, $"RAFT_REQUIRE_CHROMIUM=1 but {ChromiumFactAttribute.ChromiumPath} does not exist: install it (Debian: apt-get install chromium) or unset RAFT_REQUIRE_CHROMIUM.");
        var leader = await fixture.LeaderAsync();
        var page = fixture.Followers(leader)[0].HttpUrl!; // served by a follower: /cluster still finds the leader

        var profile = Directory.CreateTempSubdirectory("raft-kv-chromium-");
        try
        {
            var dom = await DumpDomAsync(page, profile.FullName);
            var rows = NodeRow().Matches(dom).Select(m => (Id: int.Parse(m.Groups["id"].Value, System.Globalization.CultureInfo.InvariantCulture), Role: m.Groups["role"].Value)).ToList();
            Assert.True(rows.Count == 3, $"expected 3 node rows, found {rows.Count} in:\n{dom}");
            Assert.Equal([1, 2, 3], rows.Select(r => r.Id).Order());
            Assert.Equal(leader.Id, Assert.Single(rows, r => r.Role == "leader").Id);
            Assert.Equal(2, rows.Count(r => r.Role == "follower"));
            Assert.Contains($"Leader: node {leader.Id} (term ", dom, StringComparison.Ordinal);
            Assert.Contains($"data-leader-id=\"{leader.Id}\"", dom, StringComparison.Ordinal);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    private static async Task<string> DumpDomAsync(Uri page, string profile)
    {
        var start = new ProcessStartInfo(ChromiumFactAttribute.ChromiumPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", $"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.ToString()])
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"chromium did not finish within 45 s; stderr: {await stderr}");
        }
        var dom = await stdout;
        Assert.True(process.ExitCode == 0 && dom.Length > 0, $"chromium exited with {process.ExitCode}; stderr: {await stderr}");
        return dom;
    }

    [GeneratedRegex("<tr class=\"node\" data-node-id=\"(?<id>\\d+)\" data-role=\"(?<role>\\w+)\"")]
    private static partial Regex NodeRow();
}
