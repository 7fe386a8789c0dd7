using System.Diagnostics;
using Raft.Testing.Linearizability;
using static Raft.Tests.Linearizability.H;

namespace Raft.Tests.Linearizability;

public sealed class LinearizabilityCheckerTests
{
    private static CheckResult Check(params Operation[] history) =>
        LinearizabilityChecker.Check(history, TimeSpan.FromSeconds(20));

    private static void AssertLinearizable(params Operation[] history)
    {
        var result = Check(history);
        Assert.True(result.IsLinearizable, result.ToString());
        Assert.False(result.TimedOut);
        Assert.Null(result.Failure);
    }

    /// <summary>Checks the history with clean traffic on other keys mixed in, and that <paramref name="key"/> is blamed.</summary>
    private static LinearizabilityFailure AssertNotLinearizable(string key, params Operation[] history)
    {
        var result = Check([.. Noise("a", "z"), .. history, .. Noise("m")]);
        Assert.False(result.IsLinearizable, result.ToString());
        Assert.False(result.TimedOut, result.ToString());
        var failure = Assert.IsType<LinearizabilityFailure>(result.Failure);
        Assert.Equal(key, failure.Key);
        Assert.Equal(KeyCheckOutcome.NotLinearizable, result.Keys.Single(k => k.Key == key).Outcome);
        Assert.Contains(failure.OverdueOperation, failure.UnplacedOperations);
        Assert.Contains(failure.OverdueOperation, history);
        return failure;
    }

    // ---- Linearizable histories --------------------------------------------------------------

    [Fact]
    public void Empty_history_is_linearizable()
    {
        var result = LinearizabilityChecker.Check([]);
        Assert.True(result.IsLinearizable);
        Assert.Empty(result.Keys);
    }

    [Fact]
    public void Sequential_history_is_linearizable() => AssertLinearizable(
        Get(1, "k", null, 0, 1),
        Put(1, "k", "x", 2, 3),
        Get(2, "k", "x", 4, 5),
        Cas(1, "k", "x", "y", true, 6, 7),
        Cas(2, "k", "x", "z", false, 8, 9),
        Get(1, "k", "y", 10, 11),
        Delete(2, "k", 12, 13),
        Get(1, "k", null, 14, 15),
        Cas(1, "k", null, "w", true, 16, 17),
        Get(2, "k", "w", 18, 19));

    [Theory]
    [InlineData("old")]
    [InlineData("new")]
    public void A_read_overlapping_a_write_may_see_either_value(string seen) => AssertLinearizable(
        Put(1, "k", "old", 0, 10),
        Put(1, "k", "new", 20, 40),
        Get(2, "k", seen, 25, 35));

    [Fact]
    public void Intervals_that_touch_count_as_overlapping() => AssertLinearizable(
        Put(1, "k", "x", 0, 10),
        Get(2, "k", null, 10, 20));

    [Fact]
    public void Reads_during_concurrent_writes_agree_on_one_order() => AssertLinearizable(
        Put(1, "k", "a", 0, 100),
        Put(2, "k", "b", 0, 100),
        Get(3, "k", "a", 10, 20),
        Get(3, "k", "b", 30, 40),
        Get(4, "k", "b", 50, 60),
        Get(3, "k", "b", 110, 120));

    [Fact]
    public void Cas_race_with_one_winner_is_linearizable() => AssertLinearizable(
        Cas(1, "k", null, "x", false, 0, 10),
        Cas(2, "k", null, "y", true, 1, 11),
        Cas(3, "k", null, "z", false, 2, 12),
        Get(1, "k", "y", 20, 30));

    [Fact]
    public void Cas_chain_through_concurrent_clients_is_linearizable() => AssertLinearizable(
        Put(1, "k", "0", 0, 1),
        Cas(1, "k", "0", "1", true, 10, 50),
        Cas(2, "k", "1", "2", true, 10, 50),
        Cas(3, "k", "2", "3", true, 10, 50),
        Cas(4, "k", "0", "x", false, 10, 50),
        Get(1, "k", "3", 60, 70));

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void An_unknown_write_may_or_may_not_take_effect(bool appears) => AssertLinearizable(
        Put(1, "k", "old", 0, 10),
        UnknownPut(2, "k", "maybe", 20, 30),
        Get(3, "k", appears ? "maybe" : "old", 40, 50),
        Get(3, "k", appears ? "maybe" : "old", 60, 70));

    [Fact]
    public void An_unknown_write_may_take_effect_after_the_client_gave_up() => AssertLinearizable(
        Put(1, "k", "old", 0, 10),
        UnknownPut(2, "k", "late", 20, gaveUp: 30),
        Get(3, "k", "old", 40, 50),
        Get(3, "k", "late", 60, 70));

    [Fact]
    public void An_unknown_cas_may_take_effect() => AssertLinearizable(
        Put(1, "k", "a", 0, 10),
        UnknownCas(2, "k", "a", "b", 20),
        Put(1, "k", "a", 30, 40),
        Get(3, "k", "b", 50, 60));

    [Fact]
    public void Failed_operations_are_ignored()
    {
        var result = Check(
            Put(1, "k", "old", 0, 10),
            FailedPut(2, "k", "never", 20, 30),
            Get(3, "k", "old", 40, 50),
            Operation.Unknown(4, KvInput.Get("k"), 45));
        Assert.True(result.IsLinearizable, result.ToString());
        Assert.Equal(4, result.OperationCount);
        Assert.Equal(2, result.IgnoredOperationCount);
    }

    [Fact]
    public void Results_count_operations_per_key()
    {
        var result = Check(
        [
            .. Noise("b", "a"),
            UnknownPut(1, "c", "x", 0),
            Put(1, "c", "y", 5, 6),
            Operation.Failed(2, KvInput.Delete("c"), 0, 1),
        ]);
        Assert.True(result.IsLinearizable, result.ToString());
        Assert.Equal(["a", "b", "c"], result.Keys.Select(k => k.Key));
        Assert.All(result.Keys, k => Assert.Equal(KeyCheckOutcome.Linearizable, k.Outcome));
        Assert.Equal([4, 4, 2], result.Keys.Select(k => k.OperationCount));
        Assert.Equal([0, 0, 1], result.Keys.Select(k => k.UnknownCount));
        Assert.Equal(11, result.OperationCount);
        Assert.Equal(1, result.IgnoredOperationCount);
    }

    // ---- Histories that are not linearizable --------------------------------------------------

    [Fact]
    public void A_stale_read_after_a_completed_write_is_detected()
    {
        var failure = AssertNotLinearizable("k",
            Put(1, "k", "old", 0, 10),
            Put(1, "k", "new", 20, 30),
            Get(2, "k", "old", 40, 50));
        Assert.Equal("new", failure.ValueAfterPrefix);
        Assert.Equal(KvInput.Get("k"), failure.OverdueOperation.Input);
    }

    [Fact]
    public void A_read_of_a_value_never_written_is_detected()
    {
        var failure = AssertNotLinearizable("k",
            Put(1, "k", "x", 0, 10),
            Get(2, "k", "ghost", 5, 15));
        Assert.Contains("\"ghost\"", failure.Description, StringComparison.Ordinal);
    }

    [Fact]
    public void A_value_written_only_by_a_failed_operation_cannot_be_read() => AssertNotLinearizable("k",
        FailedPut(1, "k", "rejected", 0, 10),
        Get(2, "k", "rejected", 20, 30));

    [Fact]
    public void Two_cas_with_the_same_expected_value_cannot_both_swap() => AssertNotLinearizable("k",
        Put(1, "k", "0", 0, 1),
        Cas(2, "k", "0", "x", true, 10, 20),
        Cas(3, "k", "0", "y", true, 12, 22));

    [Fact]
    public void A_cas_that_reports_no_swap_while_the_expected_value_is_held_is_detected() => AssertNotLinearizable("k",
        Put(1, "k", "0", 0, 1),
        Cas(2, "k", "0", "x", false, 10, 20),
        Get(3, "k", "0", 30, 40));

    [Fact]
    public void Non_monotonic_reads_are_detected() => AssertNotLinearizable("k",
        Put(1, "k", "old", 0, 10),
        Put(2, "k", "new", 20, 100),
        Get(3, "k", "new", 30, 40),
        Get(4, "k", "old", 50, 60));

    [Fact]
    public void A_lost_acknowledged_write_is_detected() => AssertNotLinearizable("k",
        Put(1, "k", "acked", 0, 10),
        Get(2, "k", "acked", 20, 30),
        Get(3, "k", null, 40, 50));

    [Fact]
    public void An_unknown_write_cannot_appear_and_then_vanish() => AssertNotLinearizable("k",
        Put(1, "k", "old", 0, 10),
        UnknownPut(2, "k", "maybe", 20, 30),
        Get(3, "k", "maybe", 40, 50),
        Get(3, "k", "old", 60, 70));

    [Fact]
    public void Concurrent_writes_cannot_be_observed_in_both_orders() => AssertNotLinearizable("k",
        Put(1, "k", "a", 0, 100),
        Put(2, "k", "b", 0, 100),
        Get(3, "k", "a", 10, 20),
        Get(3, "k", "b", 30, 40),
        Get(4, "k", "a", 50, 60));

    [Fact]
    public void The_failure_explains_the_longest_linearization_and_the_pending_operations()
    {
        var stale = Get(2, "k", "old", 40, 50);
        var result = Check(
            Put(1, "k", "old", 0, 10),
            Put(1, "k", "new", 20, 30),
            stale,
            Cas(3, "k", "old", "x", true, 45, 55));
        var failure = Assert.IsType<LinearizabilityFailure>(result.Failure);
        Assert.Equal([KvInput.Put("k", "old"), KvInput.Put("k", "new")], failure.LinearizedPrefix.Select(o => o.Input));
        Assert.Equal(stale, failure.OverdueOperation);
        Assert.Equal(2, failure.UnplacedOperations.Count);
        var text = result.ToString();
        Assert.Contains("NOT linearizable", text, StringComparison.Ordinal);
        Assert.Contains("Key \"k\" is not linearizable", text, StringComparison.Ordinal);
        Assert.Contains("#2 client 2: Get(\"k\") -> \"old\" [40, 50]: it read \"old\" but the register holds \"new\"", text, StringComparison.Ordinal);
        Assert.Contains("#3 client 3: Cas(\"k\", \"old\" -> \"x\") -> swapped [45, 55]: it reported a swap but the register holds \"new\", not the expected \"old\"", text, StringComparison.Ordinal);
        Assert.Contains("#2 responded at 50", text, StringComparison.Ordinal);
    }

    // ---- Bounded search -------------------------------------------------------------------------

    [Fact]
    public void A_search_that_runs_out_of_time_reports_it_and_never_claims_success()
    {
        // 24 concurrent writes, then reads that no order explains: refuting it means visiting
        // every (set of writes, last write) configuration, about 24 * 2^23 of them.
        var history = new List<Operation>();
        for (var i = 0; i < 24; i++)
            history.Add(Put(i, "k", "v" + i, 0, 100));
        history.Add(Get(30, "k", "v0", 200, 210));
        history.Add(Get(30, "k", "v1", 220, 230));
        history.Add(Get(30, "k", "v0", 240, 250));
        history.AddRange(Noise("other"));

        var watch = Stopwatch.StartNew();
        var result = LinearizabilityChecker.Check(history, TimeSpan.FromMilliseconds(200));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), watch.Elapsed.ToString());
        Assert.False(result.IsLinearizable);
        Assert.True(result.TimedOut);
        Assert.Null(result.Failure);
        Assert.Equal(KeyCheckOutcome.TimedOut, result.Keys.Single(k => k.Key == "k").Outcome);
        Assert.Contains("timed out", result.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Arguments_are_validated()
    {
        Assert.Throws<ArgumentNullException>(() => LinearizabilityChecker.Check(null!));
        Assert.Throws<ArgumentException>(() => LinearizabilityChecker.Check([null!]));
        Assert.Throws<ArgumentOutOfRangeException>(() => LinearizabilityChecker.Check([], TimeSpan.FromSeconds(-1)));
        Assert.True(LinearizabilityChecker.Check([], Timeout.InfiniteTimeSpan).IsLinearizable);
        Assert.Throws<ArgumentOutOfRangeException>(() => Put(1, "k", "v", 10, 5));
        Assert.Throws<ArgumentNullException>(() => KvInput.Put("k", null!));
    }
}
