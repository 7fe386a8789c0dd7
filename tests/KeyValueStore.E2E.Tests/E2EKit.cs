namespace Raft.Samples.KeyValueStore.E2E.Tests;

/// <summary>What the end-to-end tests share: finding the built programs they start, and the nodes' log tails for failure messages.</summary>
internal static class E2EKit
{
    /// <summary>
    /// The built assembly <paramref name="dll"/> of the project in <paramref name="folder"/> (relative to the repository
    /// root), preferring this test's own configuration (bin/&lt;Configuration&gt;/net10.0), then the newest build.
    /// </summary>
    public static string LocateBuilt(string folder, string dll)
    {
        var baseDir = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
        var tfm = Path.GetFileName(baseDir);
        var configuration = Path.GetFileName(Path.GetDirectoryName(baseDir)) ?? "Debug";
        var dir = new DirectoryInfo(baseDir);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Raft.sln")))
            dir = dir.Parent;
        Assert.True(dir is not null, "repository root (Raft.sln) not found above " + baseDir);
        var own = Path.Combine(dir.FullName, folder, "bin", configuration, tfm, dll);
        if (File.Exists(own))
            return own;
        var found = new[] { "Release", "Debug" }
            .Select(c => Path.Combine(dir.FullName, folder, "bin", c, tfm, dll))
            .Where(File.Exists)
            .OrderByDescending(File.GetLastWriteTimeUtc)
            .FirstOrDefault();
        Assert.True(found is not null, $"{dll} is not built under {folder}/bin (dotnet build {folder})");
        return found;
    }

    /// <summary>How to start the sample: the dotnet host and the sample's assembly.</summary>
    public static (string Executable, string[] Prefix) LocateSample()
    {
        var dll = LocateBuilt(Path.Combine("samples", "KeyValueStore"), "KeyValueStore.dll");
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return (string.IsNullOrEmpty(host) || !File.Exists(host) ? "dotnet" : host, [dll]);
    }

    /// <summary>The last lines of every node's log, for a failure message.</summary>
    public static string Tails(IEnumerable<NodeProcess> nodes) =>
        string.Join('\n', nodes.Select(n => $"--- node {n.Id} ({n.LogFile}) ---\n{n.Tail(40)}"));

    /// <summary>Starts a node; a restart may race the release of the ports by the previous process, so it retries a few times.</summary>
    public static void StartWithRetry(NodeProcess node)
    {
        node.Start();
        for (var i = 0; i < 10; i++)
        {
            Thread.Sleep(300);
            if (node.IsRunning)
                return;
            node.Start();
        }
    }
}
