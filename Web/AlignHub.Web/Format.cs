namespace AlignHub.Web;

public static class Format
{
    public static string Duration(long seconds) => seconds switch
    {
        < 60 => $"{seconds}s",
        < 3600 => $"{seconds / 60}m {seconds % 60:D2}s",
        _ => $"{seconds / 3600}h {seconds % 3600 / 60:D2}m",
    };

    public static string Time(long unixSeconds) =>
        DateTimeOffset.FromUnixTimeSeconds(unixSeconds).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss");
}
