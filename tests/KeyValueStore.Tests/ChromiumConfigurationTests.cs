using System.Text.RegularExpressions;

namespace Raft.Samples.KeyValueStore.Tests;

/// <summary>The status page's configuration section in a real browser (same fixture and browser helper as the node table's test).</summary>
public sealed partial class ChromiumPageTests
{
    [ChromiumFact]
    public async Task The_page_shows_the_configuration_voters_learners_and_whether_it_is_joint()
    {
        Assert.True(ChromiumFactAttribute.IsInstalled, $"RAFT_REQUIRE_CHROMIUM=1 but {ChromiumFactAttribute.ChromiumPath} does not exist.");
        var leader = await fixture.LeaderAsync();
        var profile = Directory.CreateTempSubdirectory("raft-kv-chromium-");
        try
        {
            var dom = await DumpDomAsync(fixture.Followers(leader)[0].HttpUrl!, profile.FullName);
            var members = MemberRow().Matches(dom).Select(m => (Id: m.Groups["id"].Value, Role: m.Groups["role"].Value)).ToList();
            Assert.True(members.Count == 3, $"expected 3 member rows, found {members.Count} in:\n{dom}");
            Assert.Equal(["1", "2", "3"], members.Select(m => m.Id));
            Assert.All(members, m => Assert.Equal("voter", m.Role));
            Assert.Contains("data-joint=\"false\"", dom, StringComparison.Ordinal);
            Assert.Contains($"As node {leader.Id} sees it: voters 1, 2, 3; learners none.", dom, StringComparison.Ordinal);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    [GeneratedRegex("<tr class=\"member\" data-member-id=\"(?<id>\\d+)\" data-member-role=\"(?<role>[\\w ]+)\"")]
    private static partial Regex MemberRow();
}
