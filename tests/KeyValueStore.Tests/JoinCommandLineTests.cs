using System.Net;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The <c>--join</c> start mode on the command line, and how a node finds the HTTP address of a member added later.</summary>
public sealed class JoinCommandLineTests
{
    private static readonly string[] Joiner =
        ["--id", "4", "--listen", "127.0.0.1:7004", "--http", "127.0.0.1:8004", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003", "--insecure", "--data", "/tmp/kv-node-4", "--join"];

    private static CommandLine Parse(string[] args) => CommandLine.Parse(args, _ => null);

    [Fact]
    public void Join_starts_a_node_that_is_not_in_peers_with_no_bootstrap_membership()
    {
        var parsed = Parse(Joiner);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        var options = parsed.Options!;
        Assert.True(options.Join);
        Assert.Equal(4, options.Id);
        Assert.Equal([1, 2, 3], options.Members); // the running cluster, only to reach it
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 7002), options.RaftPeers[2]);
        Assert.Equal(1000, options.HttpPortOffset);
        Assert.Contains("--join", CommandLine.Usage, StringComparison.Ordinal);
    }

    [Fact]
    public void Join_accepts_its_own_entry_in_peers_and_leaves_it_out_of_the_members()
    {
        var parsed = Parse([.. Joiner.Select(a => a == "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003" ? a + ",4=127.0.0.1:7004" : a)]);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.Equal([1, 2, 3], parsed.Options!.Members);
    }

    [Fact]
    public void Without_join_a_node_is_a_bootstrap_member_and_explicit_http_peers_turn_derivation_off()
    {
        string[] member = [.. Joiner.Where(a => a != "--join").Select(a => a switch { "4" => "2", "127.0.0.1:7004" => "127.0.0.1:7002", "127.0.0.1:8004" => "127.0.0.1:8002", _ => a })];
        var parsed = Parse(member);
        Assert.True(parsed.Mode == RunMode.Node, parsed.Error);
        Assert.False(parsed.Options!.Join);
        Assert.Equal([1, 2, 3], parsed.Options.Members);
        Assert.Equal(1000, parsed.Options.HttpPortOffset);
        var explicitPeers = Parse([.. member, "--http-peers", "1=127.0.0.1:9001,3=127.0.0.1:9003"]);
        Assert.True(explicitPeers.Mode == RunMode.Node, explicitPeers.Error);
        Assert.Null(explicitPeers.Options!.HttpPortOffset);
    }

    [Theory]
    [InlineData(new[] { "--join=yes" }, "--join takes no value")]
    [InlineData(new[] { "--peers", "4=127.0.0.1:7004" }, "Raft:Join (--join) is set: Raft:Members (--peers) must list at least one member of the running cluster")]
    public void Join_misconfiguration_is_a_clear_error(string[] change, string message)
    {
        var args = Joiner.Where(a => a != "--join").ToList();
        if (change[0] == "--peers")
        {
            var at = args.IndexOf("--peers");
            args[at + 1] = change[1];
            args.Add("--join");
        }
        else
        {
            args.AddRange(change);
        }
        var parsed = Parse([.. args]);
        Assert.True(parsed.Mode == RunMode.Invalid, $"expected an error, got {parsed.Mode}");
        Assert.Contains(message, parsed.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_http_address_of_a_member_added_later_is_derived_from_its_raft_address_in_the_configuration()
    {
        var configuration = new ClusterConfiguration([Raft.ClusterMember.Voter(1), Raft.ClusterMember.Voter(4, "127.0.0.1:7004"), Raft.ClusterMember.Learner(5, "node-5.example:7000")]);
        var derived = new ClusterDirectory([1, 2, 3], [], httpPortOffset: 1000);
        derived.Follow(() => configuration);
        Assert.True(derived.TryGet(4, out var url));
        Assert.Equal(new Uri("http://127.0.0.1:8004/"), url);
        Assert.True(derived.TryGet(5, out url));
        Assert.Equal(new Uri("http://node-5.example:8000/"), url);
        Assert.False(derived.TryGet(1, out _)); // no address in the configuration, none given
        Assert.Equal([1, 4, 5], derived.Members); // the configuration's members, not the bootstrap ones

        derived.Set(4, new Uri("http://127.0.0.1:9999/")); // given (--http-peers, SetPeer) wins
        Assert.True(derived.TryGet(4, out url));
        Assert.Equal(new Uri("http://127.0.0.1:9999/"), url);

        var given = new ClusterDirectory([1, 2, 3], []); // --http-peers given: no derivation
        given.Follow(() => configuration);
        Assert.False(given.TryGet(5, out _));
        Assert.Equal([1, 2, 3], new ClusterDirectory([3, 1, 2], []).Members); // no configuration yet: the bootstrap members
    }
}
