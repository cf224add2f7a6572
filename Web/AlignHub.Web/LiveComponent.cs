using AlignHub.Domain;
using Microsoft.AspNetCore.Components;

namespace AlignHub.Web;

/// <summary>
/// A page that re-reads its data when the rows it shows change (<see cref="ChangeFeed"/>: PostgreSQL NOTIFY from any
/// process, or the embedded default's own writes), so a worker's progress in another process shows within about a
/// second without a reload, and an open page whose data does not change sends no queries at all. Bursts are folded:
/// at most one re-read per <see cref="MinInterval"/>, and a change that arrives during a re-read causes one more.
/// </summary>
public abstract class LiveComponent : ComponentBase, IDisposable
{
    [Inject] ChangeFeed Feed { get; set; } = default!;

    readonly CancellationTokenSource stop = new();
    IDisposable? subscription;
    int scheduled; // 0: idle, 1: a re-read is scheduled or running
    volatile bool again;
    DateTime lastLoad = DateTime.MinValue;

    /// <summary>The least time between two re-reads.</summary>
    protected virtual TimeSpan MinInterval => TimeSpan.FromMilliseconds(500);

    /// <summary>Whether a change concerns this page (default: any change of job data).</summary>
    protected virtual bool Wants(ChangeFeed.Change change) => change.IsJobData;

    /// <summary>Re-renders this often without reading anything (for durations and ETAs); null: never.</summary>
    protected virtual TimeSpan? Tick => null;

    /// <summary>Also re-reads this often, for data that changes with time or without a change notice; null: never.</summary>
    protected virtual TimeSpan? Poll => null;

    protected abstract Task LoadAsync(CancellationToken ct);

    protected override async Task OnInitializedAsync() => await LoadAsync(stop.Token);

    /// <summary>Re-reads now (after an action of the page's own).</summary>
    protected async Task ReloadAsync()
    {
        await LoadAsync(stop.Token);
        StateHasChanged();
    }

    protected override void OnAfterRender(bool firstRender)
    {
        if (!firstRender) return;
        subscription = Feed.Subscribe(c =>
        {
            if (c.Table != "*" && !Wants(c)) return;
            again = true;
            if (Interlocked.Exchange(ref scheduled, 1) == 0) _ = RefreshAsync();
        });
        if (Tick is { } tick) _ = TickAsync(tick, reload: false);
        if (Poll is { } poll) _ = TickAsync(poll, reload: true);
    }

    async Task RefreshAsync()
    {
        try
        {
            while (again && !stop.IsCancellationRequested)
            {
                var wait = lastLoad + MinInterval - DateTime.UtcNow;
                await Task.Delay(wait > TimeSpan.FromMilliseconds(50) ? wait : TimeSpan.FromMilliseconds(50), stop.Token);
                again = false;
                lastLoad = DateTime.UtcNow;
                await InvokeAsync(async () =>
                {
                    await LoadAsync(stop.Token);
                    StateHasChanged();
                });
            }
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
        finally
        {
            Volatile.Write(ref scheduled, 0);
            // A change that slipped in after the loop's last check.
            if (again && !stop.IsCancellationRequested && Interlocked.Exchange(ref scheduled, 1) == 0) _ = RefreshAsync();
        }
    }

    async Task TickAsync(TimeSpan tick, bool reload)
    {
        using var timer = new PeriodicTimer(tick);
        try
        {
            while (await timer.WaitForNextTickAsync(stop.Token))
                await InvokeAsync(async () =>
                {
                    if (reload) await LoadAsync(stop.Token);
                    StateHasChanged();
                });
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
    }

    public void Dispose()
    {
        subscription?.Dispose();
        stop.Cancel();
        stop.Dispose();
        GC.SuppressFinalize(this);
    }
}
